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

__all__ = ["ENV_PREFIX", "Config", "default_state_dir", "load_config"]

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
    port: int = 0
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
    log_level: str = "info"
    # The bridge this endpoint connects out to (none: local clients only). The enrollment
    # token comes from the environment, the config file or a file, never from a flag.
    bridge_url: str | None = None
    bridge_token: str | None = dataclasses.field(default=None, repr=False)
    bridge_token_file: Path | None = None
    bridge_ca_bundle: str | None = None
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
    "log_level": str,
    "bridge_url": str,
    "bridge_token": str,
    "bridge_token_file": lambda v: Path(str(v)).expanduser(),
    "bridge_ca_bundle": str,
    "dashboard": lambda v: _boolean(v),
}
# Secrets: accepted from the environment and the file, refused as command-line flags.
_NOT_FLAGS = frozenset({"bridge_token"})


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean: use true or false")


def _convert(key: str, value: Any, origin: str) -> Any:
    try:
        converted = _FIELDS[key](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {key}={value!r} is not a valid {key}") from exc
    if key in ("poll_interval", "heartbeat_interval", "max_backoff") and converted <= 0:
        raise ConfigError(f"{origin}: {key} must be positive, got {value!r}")
    if key == "stall_after" and converted < 0:
        raise ConfigError(f"{origin}: stall_after must be 0 (never) or more, got {value!r}")
    if key in ("ws_queue_size", "globus_threads") and converted < 1:
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
