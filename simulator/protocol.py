"""Request and reply values shared by the HTTP shell and the route handlers."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, bad_request

__all__ = ["Reply", "Request", "error_reply", "new_request_id", "result_reply"]


def new_request_id() -> str:
    return secrets.token_urlsafe(7)


@dataclass(kw_only=True)
class Request:
    """One parsed HTTP request. ``args`` are the path's named groups."""

    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    args: dict[str, str] = field(default_factory=dict)
    request_id: str = field(default_factory=new_request_id)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else default

    def json(self) -> dict[str, Any]:
        """The JSON object body; 400 when the body is not one."""
        if not self.body:
            return {}
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("InvalidJSON", "The request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise bad_request("InvalidJSON", "The request body must be a JSON object")
        return doc

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass(kw_only=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(err: ApiError, req: Request) -> Reply:
    """The Transfer error shape: code, message, request_id, resource (+ extra fields)."""
    body: dict[str, Any] = {
        "code": err.code,
        "message": err.message,
        "request_id": req.request_id,
        "resource": req.path,
    }
    body.update(err.extra)
    return Reply(status=err.status, body=body, headers=dict(err.headers))


def result_reply(
    req: Request,
    *,
    code: str,
    message: str,
    data_type: str = "result",
    status: int = 200,
    **fields: Any,
) -> Reply:
    """The Transfer result shape of a write: DATA_TYPE, code, message, request_id, resource
    (+ ``fields``)."""
    body: dict[str, Any] = {
        "DATA_TYPE": data_type,
        "code": code,
        "message": message,
        "request_id": req.request_id,
        "resource": req.path,
    }
    body.update(fields)
    return Reply(status=status, body=body)
