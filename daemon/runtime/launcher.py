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
from typing import IO, Any, ClassVar, Self, TypedDict, Unpack

from ..errors import DaemonError

__all__ = ["DaemonProcess", "LaunchError", "ManagedProcess", "ProcessOptions"]


class LaunchError(DaemonError, RuntimeError):
    code = "LaunchError"


class ProcessOptions(TypedDict, total=False):
    """What every launched process takes besides its state folder and port: environment
    variables over this process's own, the address to bind, more command-line arguments,
    how long it may take to listen, and the Python to run it with."""

    env: Mapping[str, str] | None
    host: str
    extra_args: Sequence[str]
    start_timeout: float
    python: str


class ManagedProcess:
    """What every test-launched service process shares: a child running ``command()`` with
    its output appended to ``log_path``, started once it wrote ``info_file`` naming its pid
    and url, stopped by a signal and waited for. Subclasses name the files and the command."""

    # The process as the messages call it ("the daemon") and the error they raise.
    what: ClassVar[str]
    error: ClassVar[type[Exception]]
    log_name: ClassVar[str]
    info_name: ClassVar[str]
    # How long a start may take unless ``start_timeout`` says: a test suite on a slow or busy
    # machine raises it for every launcher at once.
    default_start_timeout: ClassVar[float] = 20.0

    def __init__(
        self, *, state_dir: Path | str, port: int | None, **options: Unpack[ProcessOptions]
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port
        self.env = dict(options.get("env") or {})
        self.host = options.get("host", "127.0.0.1")
        self.extra_args = list(options.get("extra_args", ()))
        self.start_timeout = options.get("start_timeout", self.default_start_timeout)
        self.python = options.get("python", sys.executable)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str = ""
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / self.log_name

    @property
    def info_file(self) -> Path:
        return self.state_dir / self.info_name

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self) -> Self:
        if self.running:
            raise self.error(f"{self.what} is running already; stop() or kill() it first")
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
                raise self.error(
                    f"{self.what} exited with code {code} while starting; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            info = self._read_info()
            if info is not None and info.get("pid") == self.proc.pid:
                self.url = str(info["url"])
                # Restart on the same port, so clients holding the URL can reconnect.
                if self.port is not None:
                    self.port = int(self.url.rsplit(":", 1)[1])
                return self
            time.sleep(0.02)
        self.kill()
        raise self.error(
            f"{self.what} did not listen within {self.start_timeout} s; "
            f"see {self.log_path}:\n{self.log_tail()}"
        )

    def _read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

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

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class DaemonProcess(ManagedProcess):
    what = "the daemon"
    error = LaunchError
    log_name = "daemon.log"
    info_name = "endpoint.json"

    def __init__(
        self,
        *,
        state_dir: Path | str,
        port: int | None = 0,
        poll_interval: float | None = None,
        name: str | None = None,
        local_collection: str | None = None,
        **options: Unpack[ProcessOptions],
    ) -> None:
        super().__init__(state_dir=state_dir, port=port, **options)
        self.poll_interval = poll_interval
        self.name = name
        self.local_collection = local_collection

    # -- paths -----------------------------------------------------------------------------

    @property
    def endpoint_file(self) -> Path:
        return self.info_file

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
        return self._token("add", name, "--quiet")

    def delete_token(self, name: str) -> None:
        """Run ``orbit-globus-endpoint token delete NAME``."""
        self._token("delete", name)

    def _token(self, *args: str) -> str:
        out = subprocess.run(
            [
                self.python,
                "-m",
                "radical.orbit.daemon",
                "token",
                *args,
                "--state-dir",
                str(self.state_dir),
            ],
            env=self._environ(),
            capture_output=True,
            check=True,
            timeout=30,
        )
        return out.stdout.decode().strip()

    # -- lifecycle -------------------------------------------------------------------------

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

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()
