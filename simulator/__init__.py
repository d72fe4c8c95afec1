"""Globus Transfer API v0.10 and Auth token simulator.

The unmodified globus-sdk talks to it over real HTTP, and real files move between local
folders that stand for collections. See docs/simulator.md.
"""

from .auth import Credentials
from .errors import ApiError, SimulatorError, UnknownTask, WorldError
from .service import Simulator
from .world import (
    MAPPED_COLLECTION_ID,
    TUTORIAL_COLLECTION_1,
    TUTORIAL_COLLECTION_2,
    Collection,
    World,
    data_access_scope,
    default_world,
    load_world,
)

__all__ = [
    "MAPPED_COLLECTION_ID",
    "TUTORIAL_COLLECTION_1",
    "TUTORIAL_COLLECTION_2",
    "ApiError",
    "Collection",
    "Credentials",
    "Simulator",
    "SimulatorError",
    "UnknownTask",
    "World",
    "WorldError",
    "data_access_scope",
    "default_world",
    "load_world",
]
