"""Endpoint daemon ``orbit-globus-endpoint``: HTTP + WebSocket API, sessions, durable
submits, bulk poller. See ``docs/daemon.md``.

Run it with ``orbit-globus-endpoint --state-dir DIR`` (or ``python -m radical.orbit.daemon``);
start it from tests with :class:`radical.orbit.daemon.launcher.DaemonProcess`.
"""

from __future__ import annotations

from .errors import DaemonError
from .runtime.config import Config, load_config
from .runtime.launcher import DaemonProcess

__all__ = ["Config", "DaemonError", "DaemonProcess", "load_config"]
