"""The endpoint's link to a bridge: connect out, relay requests and event streams inward.

With ``bridge_url`` and an enrollment token configured, the daemon keeps one WebSocket open
to the bridge's ``/link`` (reconnecting with jittered backoff) and answers the frames of
:mod:`radical.orbit.bridge.frames`. Every relayed request and stream is handed to this
daemon's own ASGI app, in process (no socket, no second parse), so each route behaves
exactly as it does for a local client: same middleware, validation, errors and
replay-then-live stream (``/ws`` runs ``serve_websocket`` itself).

Who is who: the bridge names the bridge client behind each frame; the link presents a
daemon token of its own for ``bridge:<client>`` (made in memory, never written), so every
bridge client owns its sessions, tasks and events here apart from every other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ...bridge import frames
from ...bridge.errors import BridgeError
from ..errors import ConfigError
from ..runtime.config import Config
from ..runtime.logs import get_logger
from .auth import TokenStore

if TYPE_CHECKING:
    from ..service.endpoint import EndpointService

__all__ = ["BridgeLink", "coalesce", "enrollment_token", "link_url", "start_link"]

log = get_logger(__name__)

# Largest frame either side sends: a 4 MiB body in base64 plus its envelope, or an event.
_MAX_FRAME = 16 * 2**20
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_USER_AGENT = "orbit-globus-endpoint-link/0.1"
# Answer headers a client acts on; the rest (server, date, length) the bridge sets itself.
_RELAYED_HEADERS = ("retry-after", "www-authenticate", "allow")
# Frames queued for the bridge before senders wait (a relayed stream then stops reading).
_MAX_PENDING = 10_000


def link_url(bridge_url: str) -> str:
    """The bridge's ``/link`` WebSocket URL for its base URL (http(s) or ws(s))."""
    base = bridge_url.rstrip("/")
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(plain):
            base = secure + base[len(plain) :]
    return base + "/link"


Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
# The host name relayed requests carry; nothing resolves it, the app is called directly.
_LOCAL = "http://endpoint.bridge-link"


class BridgeLink:
    """Keeps the link up and serves it; ``run()`` until cancelled."""

    def __init__(
        self,
        *,
        bridge_url: str,
        token: str,
        app: ASGIApp,
        tokens: TokenStore,
        describe: Callable[[], dict[str, Any]],
        ca_bundle: str | None = None,
        # Reconnect delays: full jitter between min_backoff and this cap.
        min_backoff: float = 0.2,
        max_backoff: float = 15.0,
        open_timeout: float = 10.0,
        ping_interval: float = 10.0,
    ) -> None:
        self._url = link_url(bridge_url)
        self._token = token
        self._app = app
        self._tokens = tokens
        self._describe = describe
        self._ssl: ssl.SSLContext | None = None
        if self._url.startswith("wss://"):
            self._ssl = ssl.create_default_context(cafile=ca_bundle)
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self.connected = asyncio.Event()

    def __repr__(self) -> str:
        return f"BridgeLink(url={self._url!r}, token=<hidden>)"

    async def run(self) -> None:
        attempts = 0
        while True:
            try:
                async with connect(
                    self._url,
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    user_agent_header=_USER_AGENT,
                    ssl=self._ssl,
                    proxy=None,
                    compression=None,
                    open_timeout=self._open_timeout,
                    ping_interval=self._ping_interval,
                    ping_timeout=2 * self._ping_interval,
                    max_size=_MAX_FRAME,
                ) as ws:
                    attempts = 0
                    log.info("bridge link up", bridge=self._url)
                    await _Session(ws, self).serve()
                    log.info("bridge link closed", bridge=self._url)
            except InvalidStatus as exc:
                log.warning(
                    "bridge refused the link", bridge=self._url, status=exc.response.status_code
                )
            except ssl.SSLError as exc:
                # Not a passing outage: an operator has to fix the CA bundle or the cert.
                log.warning(
                    "bridge certificate not accepted; set bridge_ca_bundle?",
                    bridge=self._url,
                    reason=getattr(exc, "reason", None) or type(exc).__name__,
                )
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                log.info("bridge unreachable", bridge=self._url, error=type(exc).__name__)
            finally:
                self.connected.clear()
            ceiling = min(self._max_backoff, self._min_backoff * 2**attempts)
            attempts += 1
            await asyncio.sleep(random.uniform(self._min_backoff, max(self._min_backoff, ceiling)))

    def owner_token(self, owner: str) -> str:
        """The daemon token of bridge client ``owner`` (an identity of its own here)."""
        return self._tokens.ephemeral(f"bridge:{owner}")


class _Session:
    """One connection to the bridge: its frames in, its answers out, its tasks."""

    def __init__(self, ws: ClientConnection, link: BridgeLink) -> None:
        self._ws = ws
        self._link = link
        self._pending: list[frames.Frame] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Stream id -> what the app's receive() hands out next (its disconnect, at the end).
        self._incoming: dict[int, asyncio.Queue[Message]] = {}
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=link._app, raise_app_exceptions=False),
            base_url=_LOCAL,
            trust_env=False,
        )

    async def _send(self, frame: frames.Frame) -> None:
        """Queue ``frame`` for the writer. Waits only while the queue is full: a slow bridge
        then stops the relayed streams, and the daemon's own lag handling (4008) takes over."""
        while len(self._pending) >= _MAX_PENDING:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self._pending.append(frame)
        self._wake.set()

    async def _write(self) -> None:
        """Send what is queued, in order; one event that several streams carry (a fan-out:
        the hub hands it to every listener in turn) crosses the link once as ws_fanout."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            for frame in coalesce(batch):
                await self._ws.send(frames.encode(frame))

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write(), name="bridge-link-writer")
        try:
            await self._send(frames.Hello(endpoint=self._link._describe()))
            self._link.connected.set()
            async for raw in self._ws:
                self._dispatch(frames.decode(raw))
        except BridgeError as exc:
            log.warning("bridge broke the link protocol", error=exc.message)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self._http.aclose()

    def _spawn(self, frame_id: int, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks[frame_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(frame_id, None))

    def _dispatch(self, frame: frames.Frame) -> None:
        if isinstance(frame, frames.Request):
            self._spawn(frame.id, self._request(frame))
        elif isinstance(frame, frames.WsOpen):
            self._spawn(frame.id, self._stream(frame))
        elif isinstance(frame, frames.WsClose) and frame.id in self._incoming:
            # The bridge client left: the app sees its disconnect and ends the stream.
            self._incoming[frame.id].put_nowait({"type": "websocket.disconnect", "code": 1000})
        elif isinstance(frame, frames.Cancel):
            task = self._tasks.get(frame.id)
            if task is not None:
                task.cancel()
        # Anything else is for the bridge to send, not to receive; ignore it.

    def _headers(self, owner: str) -> dict[str, str]:
        if not _OWNER.match(owner):
            raise ValueError("invalid owner")
        return {"Authorization": f"Bearer {self._link.owner_token(owner)}"}

    async def _request(self, frame: frames.Request) -> None:
        try:
            answer = await self._answer(frame)
        except Exception as exc:
            # Every request gets an answer: a bridge client must never wait for nothing.
            log.error("relayed request failed", error=type(exc).__name__)
            answer = _error(frame.id, 502, "EndpointUnavailable", "the endpoint failed to relay")
        with contextlib.suppress(ConnectionClosed):
            await self._send(answer)

    async def _answer(self, frame: frames.Request) -> frames.Response:
        if (
            not frame.path.startswith("/")
            or frame.path.startswith("//")
            or not (frame.path + frame.query).isascii()
        ):
            return _error(
                frame.id, 400, "BadRequest", "a relayed path must be ASCII and start with one '/'"
            )
        try:
            headers = self._headers(frame.owner)
        except ValueError:
            return _error(frame.id, 400, "BadRequest", "the bridge named an invalid client")
        if frame.content_type:
            headers["Content-Type"] = frame.content_type
        target = frame.path + (f"?{frame.query}" if frame.query else "")
        # raw_path keeps the host: a path can never point the request anywhere else.
        url = httpx.URL(_LOCAL).copy_with(raw_path=target.encode())
        try:
            async with asyncio.timeout(frame.timeout):
                response = await self._http.request(
                    frame.method, url, content=frame.body, headers=headers
                )
        except TimeoutError:
            return _error(
                frame.id, 504, "RelayTimeout", "the endpoint daemon did not answer in time"
            )
        except (httpx.HTTPError, ValueError) as exc:
            return _error(
                frame.id,
                502,
                "EndpointUnavailable",
                f"the endpoint daemon failed: {type(exc).__name__}",
            )
        return frames.Response(
            id=frame.id,
            status=response.status_code,
            content_type=response.headers.get("content-type"),
            body=response.content,
            headers={k: response.headers[k] for k in _RELAYED_HEADERS if k in response.headers},
        )

    async def _stream(self, frame: frames.WsOpen) -> None:
        try:
            headers = self._headers(frame.owner)
        except ValueError:
            await self._send(frames.WsRefused(id=frame.id, status=400, body=b""))
            return
        if not frame.query.isascii():
            await self._send(frames.WsRefused(id=frame.id, status=400, body=b""))
            return
        incoming: asyncio.Queue[Message] = asyncio.Queue()
        incoming.put_nowait({"type": "websocket.connect"})
        self._incoming[frame.id] = incoming
        relay = _StreamRelay(frame.id, self._send)
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("endpoint.bridge-link", 0),
            "client": ("bridge", 0),
            "root_path": "",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": frame.query.encode(),
            "headers": [
                (b"host", b"endpoint.bridge-link"),
                (b"authorization", headers["Authorization"].encode()),
            ],
            "subprotocols": [],
            # serve_websocket refuses a bad token with a real HTTP answer through this.
            "extensions": {"websocket.http.response": {}},
        }
        try:
            await self._link._app(scope, incoming.get, relay.send)
            await relay.finish()
        except ConnectionClosed:
            pass
        finally:
            self._incoming.pop(frame.id, None)


class _StreamRelay:
    """The ASGI ``send`` of one relayed ``/ws``: app messages become link frames."""

    def __init__(self, stream_id: int, send: Callable[[frames.Frame], Awaitable[None]]) -> None:
        self._id = stream_id
        self._send = send
        self._accepted = False
        self._ended = False
        self._status = 500
        self._body = bytearray()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self._accepted = True
            await self._send(frames.WsAccept(id=self._id))
        elif kind == "websocket.send":
            text = message.get("text")
            if text is None:
                text = bytes(message.get("bytes") or b"").decode(errors="replace")
            await self._send(frames.WsMessage(id=self._id, text=text))
        elif kind == "websocket.close":
            self._ended = True
            if self._accepted:
                code, reason = int(message.get("code", 1000)), str(message.get("reason") or "")
                await self._send(frames.WsClose(id=self._id, code=code, reason=reason))
            else:  # closed before accepting: a refusal, as uvicorn answers it (403)
                await self._send(frames.WsRefused(id=self._id, status=403, body=b""))
        elif kind == "websocket.http.response.start":
            self._status = int(message["status"])
        elif kind == "websocket.http.response.body":
            self._body += message.get("body", b"")
            if not message.get("more_body"):
                self._ended = True
                await self._send(
                    frames.WsRefused(id=self._id, status=self._status, body=bytes(self._body))
                )

    async def finish(self) -> None:
        """The app returned: tell the bridge, unless the app already ended the stream."""
        if not self._ended:
            self._ended = True
            if self._accepted:
                await self._send(frames.WsClose(id=self._id, code=1000, reason=""))
            else:
                await self._send(frames.WsRefused(id=self._id, status=500, body=b""))


def coalesce(batch: list[frames.Frame]) -> list[frames.Frame]:
    """Merge runs of ws_message frames with the same text into ws_fanout frames (pure).

    Only consecutive frames merge, so every stream still gets its messages in order."""
    out: list[frames.Frame] = []
    run: list[int] = []
    members: set[int] = set()
    text = ""

    def flush() -> None:
        if len(run) == 1:
            out.append(frames.WsMessage(id=run[0], text=text))
        elif run:
            out.append(frames.WsFanout(ids=tuple(run), text=text))
        run.clear()
        members.clear()

    for frame in batch:
        if isinstance(frame, frames.WsMessage):
            if run and (frame.text != text or frame.id in members):
                flush()
            run.append(frame.id)
            members.add(frame.id)
            text = frame.text
            continue
        flush()
        out.append(frame)
    flush()
    return out


def _error(frame_id: int, status: int, code: str, message: str) -> frames.Response:
    body = json.dumps({"error": code, "message": message}).encode()
    return frames.Response(id=frame_id, status=status, content_type="application/json", body=body)


# systemd: LoadCredential=bridge-token:/etc/orbit-globus/bridge-token
CREDENTIAL_NAME = "bridge-token"


def enrollment_token(config: Config, environ: Mapping[str, str]) -> str | None:
    """The bridge enrollment token: configured value, else its file, else the systemd
    credential ``bridge-token``; None when none is given."""
    if config.bridge_token:
        return config.bridge_token.strip()
    paths = [config.bridge_token_file] if config.bridge_token_file else []
    if environ.get("CREDENTIALS_DIRECTORY"):
        paths.append(Path(environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME)
    for path in paths:
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read the bridge token file {path}: {exc.strerror}") from None
        if token:
            return token
    return None


def start_link(
    config: Config, endpoint: EndpointService, app: ASGIApp, environ: Mapping[str, str]
) -> asyncio.Task[None] | None:
    """Start the bridge link when ``bridge_url`` is configured (the caller cancels it)."""
    if not config.bridge_url:
        return None
    token = enrollment_token(config, environ)
    if token is None:
        raise ConfigError(
            "bridge_url is set but no enrollment token: set RADICAL_ORBIT_BRIDGE_TOKEN, "
            "bridge_token in the config file, or bridge_token_file"
        )
    link = BridgeLink(
        bridge_url=config.bridge_url,
        token=token,
        app=app,
        tokens=endpoint.tokens,
        describe=lambda: endpoint.describe()["endpoints"][0],
        ca_bundle=config.bridge_ca_bundle,
    )
    return asyncio.create_task(link.run(), name="bridge-link")
