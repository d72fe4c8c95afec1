"""Appends that must not be lost when the ledger's storage fails.

Once Globus has answered (a task accepted, a submit or cancel refused), the answer is a fact
the ledger has to hold: re-asking Globus later might not give it back. When the append fails
on storage (disk full, I/O error), it is retried in the background, with backoff, until the
disk frees or the daemon stops; the caller learns that it is not recorded yet and says so
to its client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ...ledger.errors import RejectedEvent, StorageError
from ..runtime.logs import get_logger

__all__ = ["Recorder"]

log = get_logger(__name__)

# Seconds before the first retry of an append that failed on storage (then doubling).
_RECORD_RETRY = 1.0


class Recorder:
    def __init__(self, *, max_backoff: float = 60.0) -> None:
        self._max_backoff = max_backoff
        self._background: set[asyncio.Task[None]] = set()

    async def record(self, what: str, key: str, append: Callable[[], Awaitable[Any]]) -> bool:
        """Append now; on a storage failure keep trying in the background and return False.
        A refused event means an earlier attempt recorded it already."""
        try:
            await append()
        except RejectedEvent:
            log.info("already recorded", what=what, key=key)
        except StorageError as exc:
            log.error("cannot record, retrying", what=what, key=key, error=str(exc))
            task = asyncio.create_task(self._record_later(what, key, append))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return False
        return True

    async def _record_later(
        self, what: str, key: str, append: Callable[[], Awaitable[Any]]
    ) -> None:
        delay = _RECORD_RETRY
        while True:
            await asyncio.sleep(delay)
            try:
                await append()
            except RejectedEvent:
                pass
            except StorageError:
                delay = min(self._max_backoff, delay * 2)
                continue
            log.info("recorded after a storage failure", what=what, key=key)
            return

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
