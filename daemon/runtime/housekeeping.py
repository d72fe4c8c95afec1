"""Retention run by the daemon itself: with ``retention_days`` set, prune at start and then
every hour (the same prune as ``orbit-globus-endpoint prune --before``)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

from .logs import get_logger

if TYPE_CHECKING:
    from ..service.endpoint import EndpointService

__all__ = ["RETENTION_EVERY", "retention_loop"]

log = get_logger(__name__)

# Seconds between two prunes: events become prunable by the day, an hour late is nothing.
RETENTION_EVERY = 3600.0


async def retention_loop(endpoint: EndpointService, *, days: float) -> None:
    while True:
        before = time.time() - days * 86400.0
        try:
            result = await endpoint.prune(before=before)
        except Exception as exc:  # the next round may succeed (disk full, lock held)
            log.warning("prune failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if result.events:
                log.info("pruned", **dataclasses.asdict(result), before=before)
        await asyncio.sleep(RETENTION_EVERY)
