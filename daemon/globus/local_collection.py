"""Which collection "local" means: configured value, then Globus Connect Personal, then
``~/.radical/orbit/globus.json``; a session may override it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import LocalCollectionUnknown

__all__ = ["LOCAL", "resolve_collection", "resolve_default_local_collection"]

LOCAL = "local"


def resolve_default_local_collection(
    configured: str | None, *, home: Path | None = None
) -> str | None:
    """``configured`` already merges --local-collection and RADICAL_ORBIT_GLOBUS_COLLECTION."""
    if configured:
        return configured
    env = os.environ.get("RADICAL_ORBIT_GLOBUS_COLLECTION")
    if env:
        return env
    try:
        import globus_sdk

        gcp = globus_sdk.LocalGlobusConnectPersonal().endpoint_id
    except Exception:  # a broken GCP install must not stop the daemon
        gcp = None
    if gcp:
        return gcp
    path = (home or Path.home()) / ".radical" / "orbit" / "globus.json"
    try:
        value = json.loads(path.read_text()).get("local_collection")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def resolve_collection(collection: str, *, session_local: str | None, default: str | None) -> str:
    if collection != LOCAL:
        return collection
    resolved = session_local or default
    if not resolved:
        raise LocalCollectionUnknown()
    return resolved
