"""The simulator's clock: real time, optionally run faster, and moved on at will.

Globus's timescales (24 h deadlines, 72 h extensions, 90-day pauses) are far longer than a
test, so every time-dependent rule of the simulator reads this clock instead of
``time.time``: ``scale`` makes simulated time pass that many times faster than real time,
and :meth:`SimClock.advance` jumps ahead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SimClock"]


class SimClock:
    """``now() = start + (source() - start) * scale + offset``; never goes backwards."""

    def __init__(self, *, scale: float = 1.0, source: Callable[[], float] = time.time) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self._source = source
        self._lock = threading.Lock()
        self._origin = source()
        self._base = self._origin
        self._scale = scale
        self._offset = 0.0

    def now(self) -> float:
        with self._lock:
            return self._base + (self._source() - self._origin) * self._scale + self._offset

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        if value <= 0:
            raise ValueError("scale must be positive")
        with self._lock:
            # Re-anchor so the change applies from now on and time does not jump.
            real = self._source()
            self._base = self._base + (real - self._origin) * self._scale
            self._origin = real
            self._scale = value

    @property
    def offset(self) -> float:
        """Seconds the clock was moved on by :meth:`advance` in total."""
        return self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the simulator's clock never goes backwards")
        with self._lock:
            self._offset += seconds
