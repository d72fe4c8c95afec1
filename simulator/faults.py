"""Scheduled faults and the per-user rate limit. Pure: time and randomness are passed in."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["ROUTE_NAMES", "Fault", "FaultSchedule", "RateLimiter"]

# Route names as the SDK's TransferClient methods are called, plus the Auth routes. Faults,
# request counts and logs use them.
ROUTE_NAMES = frozenset(
    {
        "get_submission_id",
        "submit_transfer",
        "submit_delete",
        "get_task",
        "update_task",
        "cancel_task",
        "task_list",
        "task_event_list",
        "task_pause_info",
        "task_successful_transfers",
        "task_skipped_errors",
        "operation_ls",
        "operation_stat",
        "operation_mkdir",
        "operation_rename",
        "endpoint_search",
        "get_endpoint",
        "oauth2_token",
        "oauth2_token_validate",
    }
)

FAULT_STATUSES = frozenset({400, 401, 403, 404, 409, 429, 500, 502, 503, 504})


@dataclass(kw_only=True)
class Fault:
    """What the next matching requests suffer.

    ``status`` answers with that error (None: no error, only ``delay``); ``count`` requests
    at most (None: until cleared); each matching request hit with probability ``fraction``.
    """

    route: str
    status: int | None = None
    count: int | None = 1
    fraction: float = 1.0
    delay: float = 0.0
    retry_after: int | None = None
    code: str | None = None
    hits: int = 0

    def spent(self) -> bool:
        return self.count is not None and self.hits >= self.count


@dataclass(frozen=True, kw_only=True)
class FaultHit:
    status: int | None
    delay: float
    retry_after: int | None
    code: str


_DEFAULT_CODES = {
    400: "ClientError.BadRequest",
    401: "ClientError.AuthenticationFailed",
    403: "EndpointPermissionDenied",
    404: "ClientError.NotFound",
    409: "ClientError.Conflict",
    429: "ClientError.RequestLimitExceeded",
    500: "ServerError.InternalError",
    502: "ExternalError.Unavailable",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class FaultSchedule:
    faults: list[Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, fault: Fault) -> None:
        if fault.route != "*" and fault.route not in ROUTE_NAMES:
            raise ValueError(
                f"unknown route {fault.route!r}; use '*' or one of {sorted(ROUTE_NAMES)}"
            )
        if fault.status is not None and fault.status not in FAULT_STATUSES:
            raise ValueError(f"status {fault.status} is not one of {sorted(FAULT_STATUSES)}")
        if fault.status is None and fault.delay <= 0:
            raise ValueError("a fault needs a status, a delay, or both")
        if not 0.0 < fault.fraction <= 1.0:
            raise ValueError("fraction must be in (0, 1]")
        if fault.count is not None and fault.count < 1:
            raise ValueError("count must be at least 1 (or None for no end)")
        self.faults.append(fault)

    def clear(self) -> None:
        self.faults.clear()

    def match(self, route: str) -> FaultHit | None:
        """The fault the next request to ``route`` suffers, if any; counts the hit."""
        for fault in self.faults:
            if fault.route not in ("*", route) or fault.spent():
                continue
            if fault.fraction < 1.0 and self.rng.random() >= fault.fraction:
                continue
            fault.hits += 1
            status = fault.status
            code = fault.code or (_DEFAULT_CODES.get(status, "Error") if status else "")
            hit = FaultHit(
                status=status, delay=fault.delay, retry_after=fault.retry_after, code=code
            )
            self.faults = [f for f in self.faults if not f.spent()]
            return hit
        return None


class RateLimiter:
    """``rate`` requests per second per user, metered over fixed ``window``-second windows."""

    def __init__(self, *, rate: float | None, window: float) -> None:
        self.rate = rate
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, user: str, now: float) -> int | None:
        """Count one request; returns None if allowed, else whole seconds to wait."""
        if self.rate is None:
            return None
        start, used = self._windows.get(user, (now, 0))
        if now - start >= self.window:
            start, used = now, 0
        if used >= self.rate * self.window:
            return max(1, math.ceil(start + self.window - now))
        self._windows[user] = (start, used + 1)
        return None
