"""How much time the tests may take: one scalable unit for every timeout, and the size of the
costly tests.

A timeout in a test says how long something may take on this project's reference machine
(2 cores); ``ORBIT_TEST_TIME_FACTOR`` multiplies all of them on a slower or busier one, so a
loaded machine makes tests slower, never red. Write timeouts as ``30 * UNIT``.

The costly tests (state machines, storms, campaigns) run a bounded size in the default run;
the "long" hypothesis profile (``HYPOTHESIS_PROFILE=long``, campaigns on demand) runs them at
full size. Write such a size as ``size("ENV_NAME", default=4, long=40)``.
"""

from __future__ import annotations

import os

__all__ = ["LONG", "UNIT", "size"]

UNIT = float(os.environ.get("ORBIT_TEST_TIME_FACTOR", "1"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def size(name: str, *, default: int, long: int) -> int:
    """A costly test's size: ``name`` from the environment, else the "long" profile's size or
    the default run's."""
    return int(os.environ.get(name, str(long if LONG else default)))
