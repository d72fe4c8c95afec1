"""``with`` and ``async with`` for the client's objects that hold a connection or a worker.

The block hands out the object itself and ends it on the way out; each class says only what
ending means (``_on_exit``): a plugin client closes its connection, an event stream also
saves its cursor unless the block failed, a subscription stops its worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing", "Closing"]


class Closing(ABC):
    @abstractmethod
    def _on_exit(self, *, failed: bool) -> None:
        """End the object at the end of a ``with`` block (``failed``: by an exception)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._on_exit(failed=exc is not None)


class AsyncClosing(ABC):
    @abstractmethod
    async def _on_exit(self, *, failed: bool) -> None:
        """End the object at the end of an ``async with`` block."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._on_exit(failed=exc is not None)
