"""Start the real daemon as a subprocess (for tests, benchmarks, the demo, crash campaigns).

    with DaemonProcess(state_dir=tmp, env=sim.environ(), poll_interval=0.2) as daemon:
        httpx.get(daemon.url + "/endpoints", headers=daemon.headers)
        daemon.kill(); daemon.start()      # same state folder, same port

``port=None`` leaves the port to the daemon (the one it remembers in its state folder).

The daemon writes ``endpoint.json`` once it listens; ``start()`` waits for that file with
this child's pid. Output goes to ``daemon.log`` in the state folder (appended across
restarts) so a chatty daemon can never block on a full pipe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from ..errors import DaemonError

__all__ = ["DaemonProcess", "LaunchError", "ManagedProcess"]


class LaunchError(DaemonError, RuntimeError):
    code = "LaunchError"


class ManagedProcess:
    """What every test-launched service process shares: a child with its log file, stopped
    by a signal and waited for. Subclasses set ``proc`` and ``_log`` in ``start`` and say
    where the log goes."""

    proc: subprocess.Popen[bytes] | None
    _log: IO[bytes] | None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful shutdown path (SIGKILL after ``timeout``); the exit
        code."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: the crash path, nothing gets to clean up."""
        return self._signal(signal.SIGKILL, 15.0)

    def _signal(self, sig: int, timeout: float) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self._reap()
        return code

    def _reap(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class DaemonProcess(ManagedProcess):
    def __init__(
        self,
        *,
        state_dir: Path | str,
        env: Mapping[str, str] | None = None,
        poll_interval: float | None = None,
        host: str = "127.0.0.1",
        port: int | None = 0,
        name: str | None = None,
        local_collection: str | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = 20.0,
        python: str = sys.executable,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.env = dict(env or {})
        self.poll_interval = poll_interval
        self.host = host
        self.port = port
        self.name = name
        self.local_collection = local_collection
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str = ""
        self._log: IO[bytes] | None = None

    # -- paths -----------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.state_dir / "daemon.log"

    @property
    def endpoint_file(self) -> Path:
        return self.state_dir / "endpoint.json"

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def add_token(self, name: str) -> str:
        """Run ``orbit-globus-endpoint token add NAME`` and return the new token."""
        out = subprocess.run(
            [
                self.python,
                "-m",
                "radical.orbit.daemon",
                "token",
                "add",
                name,
                "--state-dir",
                str(self.state_dir),
                "--quiet",
            ],
            env=self._environ(),
            capture_output=True,
            check=True,
            timeout=30,
        )
        return out.stdout.decode().strip()

    def delete_token(self, name: str) -> None:
        """Run ``orbit-globus-endpoint token delete NAME``."""
        subprocess.run(
            [
                self.python,
                "-m",
                "radical.orbit.daemon",
                "token",
                "delete",
                name,
                "--state-dir",
                str(self.state_dir),
            ],
            env=self._environ(),
            capture_output=True,
            check=True,
            timeout=30,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def command(self) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "radical.orbit.daemon",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--host",
            self.host,
        ]
        # None: the daemon's own choice (the port it remembers in its state folder).
        if self.port is not None:
            cmd += ["--port", str(self.port)]
        if self.poll_interval is not None:
            cmd += ["--poll-interval", str(self.poll_interval)]
        if self.name is not None:
            cmd += ["--name", self.name]
        if self.local_collection is not None:
            cmd += ["--local-collection", self.local_collection]
        return cmd + self.extra_args

    def start(self) -> DaemonProcess:
        if self.running:
            raise LaunchError("the daemon is running already; stop() or kill() it first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(
            self.command(),
            env=self._environ(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                raise LaunchError(
                    f"the daemon exited with code {code} while starting; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            info = self._read_endpoint()
            if info is not None and info.get("pid") == self.proc.pid:
                self.url = str(info["url"])
                # Restart on the same port, so clients holding the URL can reconnect.
                if self.port is not None:
                    self.port = int(self.url.rsplit(":", 1)[1])
                return self
            time.sleep(0.02)
        self.kill()
        raise LaunchError(
            f"the daemon did not listen within {self.start_timeout} s; "
            f"see {self.log_path}:\n{self.log_tail()}"
        )

    def _read_endpoint(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.endpoint_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()
