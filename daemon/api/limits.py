"""Request body size limit, as plain ASGI middleware (before any parsing happens).

A body larger than ``max_body`` is refused with 413 whether it announces its length or
streams it chunked; WebSocket frames are bounded separately (uvicorn's ``ws_max_size``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ...protocol import ErrorCode

__all__ = ["MAX_BODY", "BodyLimit"]

MAX_BODY = 4 * 1024 * 1024
# A refused body is read and dropped up to this many times the limit, then the connection
# is simply closed.
_DRAIN_FACTOR = 4
# ...and for this long at most: a client that announces a large body but does not send it
# gets its 413 after this instead of holding the request open forever.
_DRAIN_SECONDS = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": ErrorCode.PAYLOAD_TOO_LARGE,
                "message": f"the request body exceeds {self.max_body} bytes; send less "
                "(e.g. split a transfer with very many items into several)",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _drain(self, receive: Receive, seen: int, more: bool) -> None:
        """Read and drop the rest of a refused body (up to a bound), so the client, still
        sending, is not reset before it can read the 413."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                while more and seen <= _DRAIN_FACTOR * self.max_body:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    seen += len(message.get("body", b""))
                    more = bool(message.get("more_body", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_body + 1
                if declared > self.max_body:
                    if declared <= _DRAIN_FACTOR * self.max_body:
                        await self._drain(receive, 0, True)
                    await self._refuse(send)
                    return
        seen = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not refused:
                    # Answer 413 now and tell the app the client left, so it stops reading
                    # (raising here would be turned into a 400 by the framework).
                    refused = True
                    await self._drain(receive, seen, bool(message.get("more_body", False)))
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # our 413 is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
