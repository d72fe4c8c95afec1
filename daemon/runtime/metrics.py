"""The daemon's Prometheus metrics (``GET /metrics``, text format 0.0.4, prometheus-client).

Each metric is defined here once; the layers that see the thing counted record it with one
line (``GLOBUS_REQUESTS.labels(...).inc()``). Values known only at scrape time (tasks by
status, WebSocket clients, sessions without a credential) are set by :func:`refresh` just
before rendering. No label carries user data: labels are Globus API method names, HTTP
status codes or error classes, task statuses and sweep outcomes, never a task id, session
id, label, path or token name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ...ledger.events import StoredEvent
from ...protocol import STATUSES

__all__ = [
    "CONTENT_TYPE",
    "GLOBUS_ERRORS",
    "GLOBUS_REQUESTS",
    "LEDGER_APPEND_SECONDS",
    "LEDGER_BATCH_EVENTS",
    "NOTIFICATION_LAG_SECONDS",
    "QUEUED_SUBMITS",
    "REGISTRY",
    "SESSIONS_WITHOUT_CREDENTIAL",
    "SWEEP_SECONDS",
    "TASKS",
    "WEBSOCKET_CLIENTS",
    "CommitMetrics",
    "globus_code",
    "refresh",
    "render",
]

REGISTRY = CollectorRegistry(auto_describe=True)
# The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TASKS = Gauge("orbit_tasks", "Tasks in the ledger by status.", ["status"], registry=REGISTRY)
QUEUED_SUBMITS = Gauge(
    "orbit_queued_submits",
    "Submits accepted and waiting for their turn to go to Globus (0 without an admission "
    "queue: submits go out at once).",
    registry=REGISTRY,
)
GLOBUS_REQUESTS = Counter(
    "orbit_globus_requests",
    "Globus calls by API method and answer (HTTP status, 'network' or 'error').",
    ["route", "code"],
    registry=REGISTRY,
)
GLOBUS_ERRORS = Counter(
    "orbit_globus_errors",
    "Globus calls that failed, by API method and answer (HTTP status, 'network' or 'error').",
    ["route", "code"],
    registry=REGISTRY,
)
SWEEP_SECONDS = Histogram(
    "orbit_sweep_duration_seconds",
    "Duration of one poller sweep of one session, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
NOTIFICATION_LAG_SECONDS = Histogram(
    "orbit_notification_lag_seconds",
    "From an event's commit to its sending to a live WebSocket client.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LEDGER_APPEND_SECONDS = Histogram(
    "orbit_ledger_append_seconds",
    "From a ledger append's call to its durable commit.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
LEDGER_BATCH_EVENTS = Histogram(
    "orbit_ledger_batch_events",
    "Events per ledger group commit.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
    registry=REGISTRY,
)
TASK_ATTENTION = Counter(
    "orbit_task_attention",
    "Episodes of a task needing attention (erroring, paused, inactive, stalled), by reason.",
    ["reason"],
    registry=REGISTRY,
)
LEDGER_APPEND_FAILURES = Counter(
    "orbit_ledger_append_failures",
    "Ledger appends that failed (disk full, I/O error): the daemon answers 503 meanwhile.",
    registry=REGISTRY,
)
WEBSOCKET_CLIENTS = Gauge(
    "orbit_websocket_clients", "Open WebSocket connections.", registry=REGISTRY
)
SESSIONS_WITHOUT_CREDENTIAL = Gauge(
    "orbit_sessions_without_credential",
    "Open sessions whose tasks nobody follows: credential missing (daemon restarted) or expired.",
    registry=REGISTRY,
)


def globus_code(exc: BaseException | None, response: object = None) -> str:
    """The ``code`` label of a Globus call: its HTTP status, or why there was none."""
    if exc is None:
        status = getattr(response, "http_status", None)
        return str(status) if isinstance(status, int) else "ok"
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return str(status)
    # globus-sdk's NetworkError family: no answer at all (refused, reset, timed out).
    return (
        "network" if "Network" in type(exc).__name__ or "Timeout" in type(exc).__name__ else "error"
    )


class CommitMetrics:
    """A ledger commit sink: the size of every group commit (the ledger hands each
    committed batch to its sinks once) and the tasks starting to need attention."""

    def offer(self, events: list[StoredEvent]) -> None:
        if events:
            LEDGER_BATCH_EVENTS.observe(len(events))
        for stored in events:
            if stored.kind == "task_needs_attention":
                TASK_ATTENTION.labels(reason=str(stored.data.get("needs_attention"))).inc()


def refresh(
    *, tasks_by_status: Mapping[str, int], websocket_clients: int, credential_states: Iterable[str]
) -> None:
    """Set the values known only at scrape time."""
    for status in STATUSES:
        TASKS.labels(status=status).set(tasks_by_status.get(status, 0))
    WEBSOCKET_CLIENTS.set(websocket_clients)
    SESSIONS_WITHOUT_CREDENTIAL.set(sum(1 for state in credential_states if state != "ok"))


def render() -> bytes:
    return generate_latest(REGISTRY)
