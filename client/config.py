"""Finding the daemon: its URL and the bearer token a client presents.

Order, first hit wins, separately for the URL and the token:

1. the arguments given to the client;
2. the environment: ``RADICAL_ORBIT_URL``; ``RADICAL_ORBIT_TOKEN``, else the file named by
   ``RADICAL_ORBIT_TOKEN_FILE``;
3. the files the daemon writes in its state folder (``RADICAL_ORBIT_STATE_DIR``, else
   ``~/.radical/orbit/endpoint``): ``endpoint.json`` (``{"url", "name", "pid"}``) and ``token``.

A URL found in ``endpoint.json`` is looked up there again when it stops answering
(:func:`relocated`): a daemon restarted on another port announces the new one in that file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["DaemonAddress", "default_state_dir", "relocated", "resolve_address"]

ENV_URL = "RADICAL_ORBIT_URL"
# Names of environment variables, not secrets.
ENV_TOKEN = "RADICAL_ORBIT_TOKEN"  # noqa: S105
ENV_TOKEN_FILE = "RADICAL_ORBIT_TOKEN_FILE"  # noqa: S105
ENV_STATE_DIR = "RADICAL_ORBIT_STATE_DIR"
ENV_CA_BUNDLE = "RADICAL_ORBIT_CA_BUNDLE"


@dataclass(frozen=True, repr=False)
class DaemonAddress:
    """Where the daemon listens and the token to present. The token never shows in repr."""

    url: str
    token: str
    # CA bundle verifying an https bridge (None: the system's trust store).
    ca_bundle: str | None = None
    # The endpoint.json the URL was read from (None: given by argument or environment).
    endpoint_file: Path | None = None

    def __repr__(self) -> str:
        return f"DaemonAddress(url={self.url!r}, token=<hidden>)"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get(ENV_STATE_DIR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".radical" / "orbit" / "endpoint"


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the daemon token file {path}: {exc.strerror}"
        ) from None
    if not token:
        raise ConfigurationError(f"the daemon token file {path} is empty")
    return token


def _url_from_state(state_dir: Path) -> str | None:
    path = state_dir / "endpoint.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    url = document.get("url") if isinstance(document, dict) else None
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f'{path} has no "url"; is the daemon running?')
    return url


def resolve_address(
    *,
    url: str | None = None,
    token: str | None = None,
    ca_bundle: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> DaemonAddress:
    """The daemon's URL and token, or :class:`ConfigurationError` saying how to set them."""
    env = os.environ if environ is None else environ
    state_dir = default_state_dir(env)
    endpoint_file: Path | None = None
    if not url and not env.get(ENV_URL):
        url = _url_from_state(state_dir)
        endpoint_file = state_dir / "endpoint.json" if url else None
    url = url or env.get(ENV_URL)
    if not url:
        raise ConfigurationError(
            f"no orbit daemon found: pass url=..., set {ENV_URL}, or start the daemon"
            f" (it writes {state_dir / 'endpoint.json'})"
        )
    if not token:
        token = env.get(ENV_TOKEN) or None
    if not token and env.get(ENV_TOKEN_FILE):
        token = _read_token_file(Path(env[ENV_TOKEN_FILE]).expanduser())
    if not token:
        default = state_dir / "token"
        if default.exists():
            token = _read_token_file(default)
    if not token:
        raise ConfigurationError(
            f"no daemon token: pass token=..., set {ENV_TOKEN} or {ENV_TOKEN_FILE},"
            f" or make {state_dir / 'token'} readable"
        )
    return DaemonAddress(
        url=url.rstrip("/"),
        token=token,
        ca_bundle=ca_bundle or env.get(ENV_CA_BUNDLE) or None,
        endpoint_file=endpoint_file,
    )


def relocated(address: DaemonAddress) -> DaemonAddress | None:
    """The address announced now in the endpoint.json ``address`` came from, if it moved.

    None when the URL was not found in a file, the file is gone or unreadable (the daemon
    is stopped or starting), or it still names the same URL.
    """
    if address.endpoint_file is None:
        return None
    try:
        url = _url_from_state(address.endpoint_file.parent)
    except ConfigurationError:
        return None
    if not url or url.rstrip("/") == address.url:
        return None
    return DaemonAddress(
        url=url.rstrip("/"),
        token=address.token,
        ca_bundle=address.ca_bundle,
        endpoint_file=address.endpoint_file,
    )
