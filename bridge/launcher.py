"""Start the real bridge as a subprocess (tests, benchmarks, the demo).

    with BridgeProcess(state_dir=tmp) as bridge:
        token = bridge.add_endpoint("site-a")          # enrollment token for a daemon
        client = bridge.add_client("alice", ["site-a"])
        bridge.kill(); bridge.start()                  # same state folder, same port

Like the daemon's launcher: ``start()`` waits for ``bridge.json`` with this child's pid, and
output goes to ``bridge.log`` in the state folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..daemon.runtime.launcher import ManagedProcess
from .errors import BridgeError
from .registry import Registry

__all__ = ["BridgeProcess", "LaunchError"]


class LaunchError(BridgeError, RuntimeError):
    code = "LaunchError"


class BridgeProcess(ManagedProcess):
    def __init__(
        self,
        *,
        state_dir: Path | str,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = 20.0,
        python: str = sys.executable,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.env = dict(env or {})
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.registry = Registry(self.state_dir)
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / "bridge.log"

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

    def start(self) -> BridgeProcess:
        if self.running:
            raise LaunchError("the bridge is running already; stop() or kill() it first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(
            self.command(),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                raise LaunchError(f"the bridge exited with code {code}:\n{self.log_tail()}")
            info = self._read_info()
            if info is not None and info.get("pid") == self.proc.pid:
                self.url = str(info["url"])
                self.port = int(self.url.rsplit(":", 1)[1])
                return self
            time.sleep(0.02)
        self.kill()
        raise LaunchError(f"the bridge did not listen within {self.start_timeout} s")

    def _read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.state_dir / "bridge.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
