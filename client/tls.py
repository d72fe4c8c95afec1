"""TLS for clients of a bridge: verify its certificate against a CA bundle.

A bridge serves HTTPS/WSS; the bundle that signed its certificate comes from ``ca_bundle=``
or ``RADICAL_ORBIT_CA_BUNDLE``, else the system's trust store. A plain ``http://`` URL (the
local daemon, a loopback bridge) needs no context at all.
"""

from __future__ import annotations

import ssl
from typing import Any

from .errors import ConfigurationError

__all__ = ["ENV_CA_BUNDLE", "ssl_context", "stream_ssl"]

ENV_CA_BUNDLE = "RADICAL_ORBIT_CA_BUNDLE"


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_bundle`` (None: the system's CAs)."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the CA bundle {ca_bundle}: {exc}") from None


def stream_ssl(url: str, ca_bundle: str | None) -> dict[str, Any]:
    """The ``ssl=`` argument for a WebSocket connect to ``url`` (none for plain ``http``)."""
    return {"ssl": ssl_context(ca_bundle)} if url.startswith(("https://", "wss://")) else {}
