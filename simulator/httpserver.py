"""The HTTP shell: a stdlib ThreadingHTTPServer that parses requests, applies latency, faults,
authentication and the rate limit, calls a route handler and writes JSON.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from .auth import User
from .control import CONTROL_PREFIX, control
from .core import SimCore
from .errors import ApiError
from .protocol import Reply, Request, error_reply
from .routes import AUTH_ROUTES, TRANSFER_ROUTES, Route

__all__ = ["SimHTTPServer", "dispatch"]

log = structlog.get_logger("radical.orbit.simulator")
_ALL_ROUTES = [*TRANSFER_ROUTES, *AUTH_ROUTES]
_TRANSFER_NAMES = frozenset(r.name for r in TRANSFER_ROUTES)
MAX_BODY = 64 * 1024 * 1024


def _find(req: Request) -> Route | None:
    path_matched = False
    for route in _ALL_ROUTES:
        m = route.pattern.match(req.path)
        if not m:
            continue
        path_matched = True
        if route.method == req.method:
            req.args = m.groupdict()
            return route
    if path_matched:
        raise ApiError(
            405,
            "ClientError.BadRequest.MethodNotAllowed",
            f"{req.method} is not allowed on {req.path}",
        )
    raise ApiError(404, "ClientError.NotFound", f"No such route: {req.path}")


def dispatch(core: SimCore, req: Request) -> tuple[Reply, str, str | None]:
    """Answer one request; also returns the route name and user name for the log line."""
    if req.path.startswith(CONTROL_PREFIX):
        try:
            return control(core, req), "control", None
        except ApiError as err:
            return error_reply(err, req), "control", None
    try:
        route = _find(req)
    except ApiError as err:
        return error_reply(err, req), "unknown", None
    assert route is not None
    transfer = route.name in _TRANSFER_NAMES
    with core.lock:
        if transfer:
            core.counts[route.name] += 1
        latency = core.latency
        fault = core.faults.match(route.name)
    if latency > 0:
        core.stopping.wait(latency)
    if fault is not None:
        if fault.delay > 0:
            core.stopping.wait(fault.delay)
        if fault.status is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            simulated = ApiError(
                fault.status,
                fault.code,
                f"Simulated fault {fault.status} on {route.name}",
                headers=headers,
            )
            return error_reply(simulated, req), route.name, None
    user: User | None = None
    with core.lock:
        try:
            if transfer:
                now = core.clock()
                user = core.users.authenticate(req.bearer(), now=now)
                wait = core.limiter.check(user.name, now)
                if wait is not None:
                    raise ApiError(
                        429,
                        "ClientError.RequestLimitExceeded",
                        f"Rate limit exceeded: at most {core.limiter.rate} requests per second "
                        f"over {core.limiter.window:g} s; retry in {wait} s",
                        headers={"Retry-After": str(wait)},
                    )
            reply = route.handler(core, user, req)
        except ApiError as err:
            reply = error_reply(err, req)
    return reply, route.name, user.name if user else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer
    # An idle keep-alive connection is closed after this many seconds.
    timeout = 120

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the structlog line in _handle says what happened, without headers."""

    def _handle(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=parts.path,
            params=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            reply, route, user = dispatch(self.server.core, req)
        except Exception:
            # format_exc, not log.exception: a renderer that shows locals would print the
            # request's Authorization header.
            log.error(
                "simulator error",
                method=req.method,
                path=req.path,
                traceback=traceback.format_exc(),
            )
            reply = error_reply(
                ApiError(500, "ServerError.InternalError", "The simulator failed on this request"),
                req,
            )
            route, user = "error", None
        # Logged before the answer leaves, so the line never trails the client's next step.
        fields: dict[str, Any] = {
            "method": req.method,
            "path": req.path,
            "route": route,
            "status": reply.status,
            "user": user,
            "request_id": req.request_id,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
        for key in ("task_id", "code"):
            if reply.body.get(key):
                fields[key] = reply.body[key]
        log.info("request", **fields)
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-Id", req.request_id)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Bursts of connections (many daemon sessions, benchmarks) must not be refused.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], core: SimCore) -> None:
        self.core = core
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is normal (timeouts, crash tests)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client went away", error=type(exc).__name__)
            return
        log.error("connection failed", traceback=traceback.format_exc())

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conn_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def drop_connections(self) -> None:
        """Cut every open connection, as a crashed service would."""
        with self._conn_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
