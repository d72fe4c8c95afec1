"""HTTP routes of the daemon (FastAPI): parse, authenticate, call ``EndpointService``, answer.

Every error is answered as ``{"error": "<Code>", "message": "<what to fix>", ...}``; the
mapping from exceptions to statuses lives here, in the handlers at the bottom.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr

from ...ledger.errors import StorageError
from ...protocol import VERSION, ErrorCode, TaskStatus
from ..errors import DaemonError
from ..runtime.logs import get_logger
from ..service.endpoint import EndpointService
from ..service.sessions import Session
from .auth import bearer_or_cookie, parse_bearer
from .dashboard import add_dashboard, browser_owner
from .health import add_operator_routes
from .limits import BodyLimit
from .models import (
    MAX_INT,
    DeleteBody,
    HistoryQuery,
    MkdirBody,
    RegisterBody,
    RenameBody,
    TransferBody,
    WaitBody,
)
from .validation import answer_refusals
from .websocket import Connections, serve_websocket

__all__ = ["create_app"]

log = get_logger(__name__)


def _endpoint(request: Request) -> EndpointService:
    endpoint: EndpointService = request.app.state.endpoint
    return endpoint


def _owner(request: Request) -> str:
    return bearer_or_cookie(
        request.headers.get("authorization"),
        cookie=lambda: browser_owner(request),
        bearer=lambda header: _endpoint(request).tokens.verify(parse_bearer(header)),
    )


Owner = Annotated[str, Depends(_owner)]
Ep = Annotated[EndpointService, Depends(_endpoint)]


def _session(session_id: str, owner: Owner, endpoint: Ep) -> Session:
    return endpoint.session(owner, session_id)


Sess = Annotated[Session, Depends(_session)]


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def create_app(endpoint: EndpointService, connections: Connections) -> FastAPI:
    app = FastAPI(
        title="orbit-globus endpoint",
        version=VERSION,
        description="Endpoint daemon orchestrating Globus transfers (HTTP + WebSocket API).",
        # Every request needs the bearer token, the API description too (served below);
        # the interactive pages load scripts from the internet, so they are off.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    answer_refusals(app)
    app.add_middleware(BodyLimit)
    app.state.endpoint = endpoint
    app.state.connections = connections

    @app.exception_handler(DaemonError)
    async def _daemon_error(_request: Request, exc: DaemonError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == ErrorCode.UNAUTHORIZED else None
        if exc.status >= 500 and exc.code == ErrorCode.INTERNAL:
            log.error("internal error", error=exc.message)
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage failure", error=str(exc))
        return JSONResponse(
            {
                "error": ErrorCode.STORAGE_UNAVAILABLE,
                "message": f"the daemon could not record this ({exc}); nothing of it was "
                "recorded: try again once its storage works (GET /ready)",
            },
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", error=type(exc).__name__)
        return JSONResponse(
            {"error": ErrorCode.INTERNAL, "message": "the daemon failed; see its log"},
            status_code=500,
        )

    # -- endpoint and sessions -------------------------------------------------------------

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_owner: Owner) -> dict[str, Any]:
        return app.openapi()

    @app.get("/endpoints")
    async def list_endpoints(_owner: Owner, endpoint: Ep) -> dict[str, Any]:
        return endpoint.describe()

    @app.post("/globus/sessions")
    async def register_session(body: RegisterBody, owner: Owner, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.register(
            owner=owner,
            access_token=_reveal(body.access_token),
            refresh_token=_reveal(body.refresh_token),
            client_id=body.client_id,
            local_collection=body.local_collection,
            session_id=body.session_id,
            policy=body.policy.model_dump() if body.policy is not None else None,
        )

    @app.get("/globus/sessions")
    async def list_sessions(owner: Owner, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.list_sessions(owner)

    @app.get("/globus/sessions/{session_id}")
    async def get_session(session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.describe_session(session)

    @app.delete("/globus/sessions/{session_id}")
    async def unregister(session_id: str, owner: Owner, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.unregister(owner=owner, session_id=session_id)

    # -- tasks -------------------------------------------------------------------------

    @app.post("/globus/sessions/{session_id}/transfers")
    async def submit_transfer(body: TransferBody, session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.submit_transfer(session, body=body.model_dump())

    @app.post("/globus/sessions/{session_id}/deletes")
    async def delete(body: DeleteBody, session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.submit_delete(session, body=body.model_dump())

    @app.get("/globus/sessions/{session_id}/submission_id")
    async def submission_id(session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.submission_id(session)

    @app.get("/globus/sessions/{session_id}/tasks")
    async def list_tasks(
        session: Sess,
        endpoint: Ep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
        status: TaskStatus | None = None,
    ) -> dict[str, Any]:
        return await endpoint.list_tasks(session, limit=limit, offset=offset, status=status)

    @app.get("/globus/sessions/{session_id}/tasks/{task_id}")
    async def get_task(task_id: str, session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.get_task(session, task_id)

    @app.post("/globus/sessions/{session_id}/tasks/{task_id}/wait")
    async def task_wait(
        task_id: str, session: Sess, endpoint: Ep, body: WaitBody | None = None
    ) -> dict[str, Any]:
        timeout = body.timeout if body is not None else 60.0
        stop = body.stop_on_attention if body is not None else False
        return await endpoint.wait_task(session, task_id, timeout, stop_on_attention=stop)

    @app.get("/globus/sessions/{session_id}/tasks/{task_id}/events")
    async def task_events(
        task_id: str,
        session: Sess,
        endpoint: Ep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    ) -> dict[str, Any]:
        return await endpoint.task_events(session, task_id, limit=limit, offset=offset)

    @app.post("/globus/sessions/{session_id}/tasks/{task_id}/cancel")
    async def cancel_task(task_id: str, session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.cancel(session, task_id)

    # -- file and collection operations ------------------------------------------------

    @app.get("/globus/sessions/{session_id}/ls")
    async def ls(
        session: Sess,
        endpoint: Ep,
        collection: Annotated[str, Query(min_length=1, max_length=128)],
        path: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> Any:
        return await endpoint.ls(session, collection=collection, path=path)

    @app.post("/globus/sessions/{session_id}/mkdir")
    async def mkdir(body: MkdirBody, session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.mkdir(session, collection=body.collection, path=body.path)

    @app.post("/globus/sessions/{session_id}/rename")
    async def rename(body: RenameBody, session: Sess, endpoint: Ep) -> dict[str, Any]:
        return await endpoint.rename(
            session, collection=body.collection, oldpath=body.oldpath, newpath=body.newpath
        )

    @app.get("/globus/sessions/{session_id}/endpoint_search")
    async def endpoint_search(
        session: Sess,
        endpoint: Ep,
        filter_text: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 25,
    ) -> dict[str, Any]:
        return await endpoint.endpoint_search(session, filter_text=filter_text, limit=limit)

    @app.get("/globus/sessions/{session_id}/endpoints/{collection}")
    async def get_endpoint(collection: str, session: Sess, endpoint: Ep) -> Any:
        return await endpoint.get_endpoint(session, collection=collection)

    # -- history and notifications ---------------------------------------------------------

    @app.get("/globus/history")
    async def history(owner: Owner, endpoint: Ep, query: Annotated[HistoryQuery, Query()]) -> Any:
        if query.view == "tasks":
            return await endpoint.history_tasks(owner, query)
        # Already JSON text: encoding event data twice (and holding it as Python objects
        # in between) cost GBs of memory for pages of large events.
        text = await endpoint.history_events(owner, query)
        return Response(content=text, media_type="application/json")

    if endpoint.config.dashboard:
        add_dashboard(app, endpoint)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_websocket(websocket, endpoint, connections)

    add_operator_routes(app, endpoint, connections)

    return app
