"""Start the real bridge as a subprocess (tests, benchmarks, the demo).

    with BridgeProcess(state_dir=tmp) as bridge:
        token = bridge.add_endpoint("site-a")          # enrollment token for a daemon
        client = bridge.add_client("alice", ["site-a"])
        bridge.kill(); bridge.start()                  # same state folder, same port

Like the daemon's launcher: ``start()`` waits for ``bridge.json`` with this child's pid, and
output goes to ``bridge.log`` in the state folder. ``linked_endpoints`` starts endpoint daemons
that link out to a running bridge.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Unpack

from ..daemon.runtime.launcher import DaemonProcess, ManagedProcess, ProcessOptions
from .errors import BridgeError
from .registry import Registry

__all__ = ["BridgeProcess", "LaunchError", "linked_endpoints"]


class LaunchError(BridgeError, RuntimeError):
    code = "LaunchError"


class BridgeProcess(ManagedProcess):
    what = "the bridge"
    error = LaunchError
    log_name = "bridge.log"
    info_name = "bridge.json"

    def __init__(
        self,
        *,
        state_dir: Path | str,
        port: int = 0,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        **options: Unpack[ProcessOptions],
    ) -> None:
        super().__init__(state_dir=state_dir, port=port, **options)
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.registry = Registry(self.state_dir)

    def add_endpoint(self, name: str) -> str:
        """Enroll ``name``; returns its enrollment token."""
        return self.registry.add_endpoint(name)

    def add_client(self, name: str, endpoints: Sequence[str] = ("*",)) -> str:
        """A client token for ``endpoints``."""
        return self.registry.add_client(name, list(endpoints))

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "radical.orbit.bridge", "--state-dir", str(self.state_dir)]
        cmd += ["serve", "--host", self.host, "--port", str(self.port)]
        if self.tls_cert is not None and self.tls_key is not None:
            cmd += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]
        return cmd + self.extra_args


@contextmanager
def linked_endpoints(
    bridge: BridgeProcess,
    names: Sequence[str],
    *,
    root: Path | str,
    env: Mapping[str, str],
    poll_interval: float | None = None,
    ca_bundle: str | None = None,
) -> Iterator[list[DaemonProcess]]:
    """Enroll ``names`` on the running ``bridge`` and start a daemon for each (state folder
    ``root``/name) that links out to it with its enrollment token; all stopped on the way out.

    ``env`` is the rest of the daemons' environment (the simulator's URLs, log level...);
    ``ca_bundle`` lets them trust a bridge with a self-signed certificate. Each daemon's
    ``env`` holds its enrollment token as ``RADICAL_ORBIT_BRIDGE_TOKEN``.
    """
    link = {"RADICAL_ORBIT_BRIDGE_URL": bridge.url}
    if ca_bundle is not None:
        link["RADICAL_ORBIT_BRIDGE_CA_BUNDLE"] = ca_bundle
    daemons: list[DaemonProcess] = []
    try:
        for name in names:
            enrollment = {"RADICAL_ORBIT_BRIDGE_TOKEN": bridge.add_endpoint(name)}
            daemon = DaemonProcess(
                state_dir=Path(root) / name,
                env={**env, **link, **enrollment},
                poll_interval=poll_interval,
                name=name,
            )
            daemons.append(daemon)
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()
