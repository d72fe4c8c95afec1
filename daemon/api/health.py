"""Routes for operators: ``/health`` (liveness), ``/ready`` (readiness) and ``/metrics``.

``/health`` and ``/ready`` need no token and answer no content, only a status: 204 when
alive / ready, 503 when not ready (the ledger refuses writes, or a session with a credential
has no live poller). ``/metrics`` answers the Prometheus text format; whether it needs a
daemon token is the ``metrics_auth`` setting (its metrics carry no user data either way).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from ..runtime.metrics import CONTENT_TYPE
from ..service.endpoint import EndpointService
from .auth import parse_bearer
from .websocket import Connections

__all__ = ["add_operator_routes"]


def add_operator_routes(app: FastAPI, endpoint: EndpointService, connections: Connections) -> None:
    @app.get("/health", status_code=204, include_in_schema=False)
    async def health() -> Response:
        # Answering at all is the proof: the event loop runs and serves HTTP.
        return Response(status_code=204)

    @app.get("/ready", status_code=204, include_in_schema=False)
    async def ready() -> Response:
        return Response(status_code=204 if await endpoint.ready() else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if endpoint.config.metrics_auth:
            endpoint.tokens.verify(parse_bearer(request.headers.get("authorization")))
        body = await endpoint.metrics(websocket_clients=len(connections.open))
        return Response(body, media_type=CONTENT_TYPE)
