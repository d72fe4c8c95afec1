"""Daemon configuration: flags > environment (``RADICAL_ORBIT_*``) > TOML file > defaults."""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["ENV_PREFIX", "OPTION_NAMES", "Config", "default_state_dir", "load_config"]

ENV_PREFIX = "RADICAL_ORBIT_"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_PREFIX + "STATE_DIR"):
        return Path(env[ENV_PREFIX + "STATE_DIR"]).expanduser()
    # systemd's StateDirectory= sets STATE_DIRECTORY (possibly a ':'-separated list).
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".radical" / "orbit" / "endpoint"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    state_dir: Path
    host: str = "127.0.0.1"
    # None: the port this state folder's daemon bound before (file ``port``), else any free
    # one; 0: any free port at every start; N: exactly N.
    port: int | None = None
    # When the port to keep is taken: False stops the start with a message, True takes a
    # free port and announces it in endpoint.json (clients re-read it).
    port_fallback: bool = False
    name: str = dataclasses.field(default_factory=socket.gethostname)
    poll_interval: float = 10.0
    local_collection: str | None = None
    # Events a WebSocket client may have queued before it is closed with 4008.
    ws_queue_size: int = 1000
    heartbeat_interval: float = 5.0
    # Threads for blocking globus-sdk calls; bounds concurrent Globus requests.
    globus_threads: int = 16
    # Seconds the poller waits at most after 429/5xx/timeouts before trying again.
    max_backoff: float = 60.0
    # Seconds an ACTIVE task may move nothing before it needs attention ("stalled"); 0: never.
    stall_after: float = 3600.0
    # Globus's request limit per user: this many requests/s over windows of this many
    # seconds (20/s over 10 s: GLOBUS_BEHAVIOUR.md, from the Globus FAQ as quoted by third
    # parties). Each credential's budget stays under it (docs/daemon.md "Request budget").
    globus_rate_limit: float = 20.0
    globus_rate_window: float = 10.0
    # Requests/s per credential the poller may spend on sweeps sooner than poll_interval
    # while the credential has unfinished tasks (0: never sooner than the interval).
    early_poll_rate: float = 1.0
    log_level: str = "info"
    # The bridge this endpoint connects out to (none: local clients only). The enrollment
    # token comes from the environment, the config file or a file, never from a flag.
    bridge_url: str | None = None
    bridge_token: str | None = dataclasses.field(default=None, repr=False)
    bridge_token_file: Path | None = None
    bridge_ca_bundle: str | None = None
    # Seconds a client has to send a request's headers (from its connect or the previous
    # answer) before it is answered 408 and closed; bodies get BODY_TIMEOUT_FACTOR times it.
    header_timeout: float = 10.0
    # Open HTTP connections at most (lowered to fit the file descriptor limit), and of
    # those at most max_untrusted that have not yet shown a valid token: a new one beyond
    # that pushes out the oldest untrusted connection.
    max_connections: int = 16384
    max_untrusted: int = 8192
    # Bytes of paths (and label) one submit may carry; Globus documents no limit, and each
    # byte is kept in the ledger for good. Above it: 413 asking to split the submit.
    max_submit_bytes: int = 2 * 2**20
    # The admission queue (docs/daemon.md). Globus's limits per user: 100 unfinished tasks
    # (docs.globus.org/api/transfer/task_behavior) and 20 requests/s over 10 s windows (the
    # Globus FAQ as quoted second-hand; see /work/shared/GLOBUS_BEHAVIOUR.md).
    globus_max_pending: int = 100
    # Submits each session may have waiting before new ones are refused (429 QueueFull).
    admission_max_queued: int = 10_000
    # Submits sent per second per session at most, below Globus's rate (0: unpaced).
    admission_rate: float = 18.0
    # After a 409 pending-task refusal, try one submit again after this long at the latest.
    admission_probe_interval: float = 5.0
    # Where a submission_id comes from when the client gives none: "local" (a random UUID,
    # no request) or "globus" (GET /submission_id, as globus-sdk does).
    submission_ids: str = "local"
    # Whether GET /metrics needs a daemon token like every API route (False: anyone who can
    # reach the address may scrape; the metrics carry no user data either way).
    metrics_auth: bool = False
    # Days finished tasks keep their events (None: forever); each task keeps its row.
    retention_days: float | None = None
    # The web dashboard at /dashboard/ (static pages; sign-in by a one-time link or a token).
    dashboard: bool = True

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.db"


# name -> converter; the same names are used for flags (--poll-interval), environment
# (RADICAL_ORBIT_POLL_INTERVAL) and TOML keys (poll_interval).
_FIELDS: dict[str, Any] = {
    "state_dir": lambda v: Path(str(v)).expanduser(),
    "host": str,
    "port": int,
    "name": str,
    "poll_interval": float,
    "local_collection": str,
    "ws_queue_size": int,
    "heartbeat_interval": float,
    "globus_threads": int,
    "max_backoff": float,
    "stall_after": float,
    "globus_rate_limit": float,
    "globus_rate_window": float,
    "early_poll_rate": float,
    "log_level": str,
    "bridge_url": str,
    "bridge_token": str,
    "bridge_token_file": lambda v: Path(str(v)).expanduser(),
    "bridge_ca_bundle": str,
    "header_timeout": float,
    "max_connections": int,
    "max_untrusted": int,
    "max_submit_bytes": int,
    "globus_max_pending": int,
    "admission_max_queued": int,
    "admission_rate": float,
    "admission_probe_interval": float,
    "submission_ids": str,
    "port_fallback": lambda v: _boolean(v),
    "metrics_auth": lambda v: _boolean(v),
    "retention_days": float,
    "dashboard": lambda v: _boolean(v),
}
OPTION_NAMES = frozenset(_FIELDS)
# Secrets: accepted from the environment and the file, refused as command-line flags.
_NOT_FLAGS = frozenset({"bridge_token"})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(value)


def _convert(key: str, value: Any, origin: str) -> Any:
    try:
        converted = _FIELDS[key](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {key}={value!r} is not a valid {key}") from exc
    positive = (
        "poll_interval",
        "heartbeat_interval",
        "max_backoff",
        "header_timeout",
        "globus_rate_limit",
        "globus_rate_window",
        "retention_days",
    )
    if key in positive and not converted > 0:
        raise ConfigError(f"{origin}: {key} must be positive, got {value!r}")
    if key == "stall_after" and not converted >= 0:
        raise ConfigError(f"{origin}: stall_after must be 0 (never) or more, got {value!r}")
    if key == "early_poll_rate" and not converted >= 0:
        raise ConfigError(f"{origin}: early_poll_rate must be 0 or more, got {value!r}")
    if key == "admission_probe_interval" and converted <= 0:
        raise ConfigError(f"{origin}: {key} must be positive, got {value!r}")
    if key == "admission_rate" and converted < 0:
        raise ConfigError(f"{origin}: {key} must be >= 0 (0: unpaced), got {value!r}")
    if key == "submission_ids" and converted not in ("local", "globus"):
        raise ConfigError(f"{origin}: {key} must be 'local' or 'globus', got {value!r}")
    if key in (
        "ws_queue_size",
        "globus_threads",
        "max_connections",
        "max_untrusted",
        "max_submit_bytes",
        "globus_max_pending",
        "admission_max_queued",
    ) and (converted < 1):
        raise ConfigError(f"{origin}: {key} must be at least 1, got {value!r}")
    if key == "port" and not 0 <= converted <= 65535:
        raise ConfigError(f"{origin}: port must be 0..65535, got {value!r}")
    return converted


def load_config(
    *,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Merge the sources; ``flags`` holds only options given on the command line."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or (
        Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None
    )
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        # Accept both a flat file and one with an [endpoint] table.
        table = table.get("endpoint", table)
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown key {key!r}; known: {', '.join(_FIELDS)}")
            values[key] = _convert(key, value, str(path))
    for key in _FIELDS:
        name = ENV_PREFIX + key.upper()
        if env.get(name):
            values[key] = _convert(key, env[name], name)
    # The issue names this variable for the "local" collection; it wins over the file.
    if env.get(ENV_PREFIX + "GLOBUS_COLLECTION"):
        values["local_collection"] = env[ENV_PREFIX + "GLOBUS_COLLECTION"]
    for key, value in (flags or {}).items():
        if key in _NOT_FLAGS:
            raise ConfigError(
                f"{key} is never taken from the command line; set it in the "
                f"environment ({ENV_PREFIX}{key.upper()}) or the config file"
            )
        if value is not None:
            values[key] = _convert(key, value, "--" + key.replace("_", "-"))
    if "state_dir" not in values:
        values["state_dir"] = default_state_dir(env)
    return Config(**values)
