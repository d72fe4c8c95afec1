"""Log throttling: one line per key per interval, with the count of those held back.

Anyone who can reach the port can make the daemon refuse something (a WebSocket handshake
without a token, an accept with no descriptor left) as often as they like; a line per
refusal would let them fill the disk with the daemon's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

__all__ = ["Throttle"]


class Throttle:
    """``allow(key)`` is the number of events held back since the last allowed one for
    ``key`` (0 or more) when a line may be written now, else None."""

    def __init__(
        self,
        *,
        interval: float,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self.max_keys:
            # Many sources (spoofed ports, IPv6 addresses): forget the expired ones, and
            # if none expired hold this one back rather than grow without bound.
            expired = [k for k, t in self._last.items() if now - t >= self.interval]
            for k in expired:
                del self._last[k]
            if len(self._last) >= self.max_keys:
                return None
        self._last[key] = now
        return self._held.pop(key, 0)
