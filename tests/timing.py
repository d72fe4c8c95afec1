"""One scalable time unit for every timeout in the tests.

A timeout in a test says how long something may take on this project's reference machine
(2 cores); ``ORBIT_TEST_TIME_FACTOR`` multiplies all of them on a slower or busier one, so a
loaded machine makes tests slower, never red. Write timeouts as ``30 * UNIT``.
"""

from __future__ import annotations

import os

__all__ = ["UNIT"]

UNIT = float(os.environ.get("ORBIT_TEST_TIME_FACTOR", "1"))
