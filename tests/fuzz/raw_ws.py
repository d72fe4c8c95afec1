"""A bare WebSocket client on a plain socket, for what a well-behaved library will not do:
never read, stop mid-handshake, drop the TCP connection without a close frame."""

from __future__ import annotations

import base64
import os
import socket
import struct
import urllib.parse
from dataclasses import dataclass

__all__ = ["Frame", "RawSocket"]

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int:
        return int(struct.unpack("!H", self.payload[:2])[0]) if len(self.payload) >= 2 else 1005

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


class RawSocket:
    def __init__(self, url: str, *, rcvbuf: int | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window stays small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect((self.host, self.port))
        self.buffer = b""

    def request(self, token: str | None) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
        return (
            f"GET {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        ).encode()

    def handshake(self, token: str | None) -> str:
        """Send the upgrade request; return the status line of the answer."""
        self.sock.sendall(self.request(token))
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head.split(b"\r\n", 1)[0].decode()

    def _need(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_frame(self) -> Frame:
        """One whole message (server frames are unmasked; continuations are joined)."""
        payload = b""
        opcode = 0
        while True:
            b0, b1 = self._need(2)
            opcode = opcode or b0 & 0x0F
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._need(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._need(8))[0]
            payload += self._need(size)
            if b0 & 0x80:
                return Frame(opcode, payload)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """A masked client frame, as the protocol requires."""
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def close(self) -> None:
        self.sock.close()
