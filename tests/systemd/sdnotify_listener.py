"""The service manager's end of NOTIFY_SOCKET, for tests: a bound AF_UNIX datagram socket.

It records every datagram with the sender's pid (SCM_CREDENTIALS, as systemd checks for
NotifyAccess=main) and the monotonic time it was read.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Message", "NotifyListener"]

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Message:
    fields: dict[str, str]
    pid: int | None
    time: float
    raw: bytes = field(repr=False)

    @property
    def keys(self) -> list[str]:
        return list(self.fields)


class NotifyListener:
    """Bound to a file path, or to an abstract name when ``abstract`` is given."""

    def __init__(self, *, path: Path | None = None, abstract: str | None = None):
        if (path is None) == (abstract is None):
            raise ValueError("give exactly one of path= or abstract=")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if path is not None:
            self.address = str(path)
            self.sock.bind(self.address)
        else:
            self.address = "@" + str(abstract)
            self.sock.bind("\0" + str(abstract))
        self.received: list[Message] = []

    def environ(self, **extra: str) -> dict[str, str]:
        """os.environ plus NOTIFY_SOCKET pointing here (for a child process)."""
        env = dict(os.environ)
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)
        env["NOTIFY_SOCKET"] = self.address
        env.update(extra)
        return env

    def recv(self, *, timeout: float) -> Message | None:
        """The next datagram, or None if none arrives within ``timeout`` seconds."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(_UCRED.size))
        pid = None
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(value[: _UCRED.size])[0]
        fields = dict(line.partition("=")[::2] for line in data.decode("utf-8").split("\n") if line)
        message = Message(fields=fields, pid=pid, time=time.monotonic(), raw=data)
        self.received.append(message)
        return message

    def drain(self, *, timeout: float) -> list[Message]:
        """Everything that arrives until ``timeout`` seconds pass with nothing new."""
        got = []
        while (message := self.recv(timeout=timeout)) is not None:
            got.append(message)
        return got

    def wait_for(self, key: str, *, timeout: float, value: str | None = None) -> Message:
        """Read until a datagram carries ``key`` (and ``value``); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.recv(timeout=left)
            if message is None:
                break
            if key in message.fields and (value is None or message.fields[key] == value):
                return message
        seen = [m.fields for m in self.received]
        raise AssertionError(f"no {key}={value or '*'} within {timeout}s; received {seen}")

    def close(self) -> None:
        self.sock.close()
