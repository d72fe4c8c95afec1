"""What the framework's own refusals are answered (a request that fails validation, no such
route, a wrong method, an unreadable body): the daemon's and the bridge's."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...protocol import ErrorCode

__all__ = ["answer_refusals", "describe_validation"]


def describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """(message, details) of a validation failure: each error's place and what is wrong,
    never the input (it may be a credential sent in the wrong field)."""
    details = []
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        # Never echo "input": it may be a credential sent in the wrong field.
        details.append(
            {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        )
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts) or "invalid request", details


def answer_refusals(app: FastAPI) -> None:
    """Answer the framework's refusals with our codes and a message that says what to fix
    (its bare "Not Found" / "There was an error parsing the body" do not)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = describe_validation(exc)
        return JSONResponse(
            {"error": ErrorCode.VALIDATION, "message": message, "details": details}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        code = {
            400: ErrorCode.BAD_REQUEST,
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.METHOD_NOT_ALLOWED,
        }.get(status, ErrorCode.HTTP)
        where = f"{request.method} {request.url.path}"
        message = {
            400: "the request body could not be read: send a JSON object encoded as UTF-8 "
            "with Content-Type: application/json",
            404: f"no route {where}; GET /openapi.json lists the routes",
            405: f"{where}: method not allowed on this route; GET /openapi.json lists the "
            "routes and their methods",
        }.get(status, str(exc.detail))
        return JSONResponse(
            {"error": code, "message": message}, status_code=status, headers=exc.headers
        )
