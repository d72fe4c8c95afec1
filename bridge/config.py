"""Bridge configuration: flags > environment (``RADICAL_ORBIT_BRIDGE_*``) > defaults.

Plain HTTP is allowed on loopback only: anywhere else the bridge needs a TLS certificate and
key, because client tokens, enrollment tokens and Globus credentials cross it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "OPTION_NAMES",
    "BridgeConfig",
    "default_state_dir",
    "is_loopback",
    "load_config",
]

ENV_PREFIX = "RADICAL_ORBIT_BRIDGE_"
CREDENTIAL_CERT = "tls-cert"
CREDENTIAL_KEY = "tls-key"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_PREFIX + "STATE_DIR"):
        return Path(env[ENV_PREFIX + "STATE_DIR"]).expanduser()
    if env.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".radical" / "orbit" / "bridge"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, kw_only=True)
class BridgeConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    # TLS: both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Seconds a relayed request may take unless its route asks for longer (task wait).
    relay_timeout: float = 60.0
    # Seconds an endpoint has to accept a relayed event stream.
    stream_open_timeout: float = 10.0
    # Stream messages a slow bridge client may have queued before it is closed with 4008.
    stream_queue: int = 1000
    log_level: str = "info"
    # The web dashboard at /dashboard/ (bridge/dashboard.py); false: 404, no cookie accepted.
    dashboard: bool = True

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("give both tls_cert and tls_key, or neither")
        if self.tls_cert is None and not is_loopback(self.host):
            raise ConfigError(
                f"refusing plain HTTP on {self.host}: give tls_cert and tls_key, or bind "
                "127.0.0.1 (plain HTTP is for loopback only)"
            )

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


_FIELDS: dict[str, Any] = {
    "state_dir": lambda v: Path(str(v)).expanduser(),
    "host": str,
    "port": int,
    "tls_cert": lambda v: Path(str(v)).expanduser(),
    "tls_key": lambda v: Path(str(v)).expanduser(),
    "relay_timeout": float,
    "stream_open_timeout": float,
    "stream_queue": int,
    "log_level": str,
    "dashboard": lambda v: _boolean(v),
}


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


OPTION_NAMES = frozenset(_FIELDS)


def _convert(key: str, value: Any, origin: str) -> Any:
    try:
        converted = _FIELDS[key](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {key}={value!r} is not a valid {key}") from exc
    if key in ("relay_timeout", "stream_open_timeout") and converted <= 0:
        raise ConfigError(f"{origin}: {key} must be positive, got {value!r}")
    if key == "stream_queue" and converted < 1:
        raise ConfigError(f"{origin}: stream_queue must be at least 1, got {value!r}")
    if key == "port" and not 0 <= converted <= 65535:
        raise ConfigError(f"{origin}: port must be 0..65535, got {value!r}")
    return converted


def load_config(
    *, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> BridgeConfig:
    """Merge the sources; ``flags`` holds only options given on the command line."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for key in _FIELDS:
        name = ENV_PREFIX + key.upper()
        if env.get(name):
            values[key] = _convert(key, env[name], name)
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _convert(key, value, "--" + key.replace("_", "-"))
    values.setdefault("state_dir", default_state_dir(env))
    # Under systemd the certificate and key arrive as credentials (LoadCredential=tls-cert,
    # tls-key): used when both are there and nothing else was configured.
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and "tls_cert" not in values and "tls_key" not in values:
        cert_path, key_path = Path(creds) / CREDENTIAL_CERT, Path(creds) / CREDENTIAL_KEY
        if cert_path.is_file() and key_path.is_file():
            values["tls_cert"], values["tls_key"] = cert_path, key_path
    return BridgeConfig(**values)
