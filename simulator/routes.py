"""Handlers of the Transfer API v0.10 task routes and of the Auth token endpoints.

Each handler takes the core, the authenticated user (None for Auth routes) and the request,
and returns a :class:`Reply` or raises :class:`ApiError`. The caller holds the core's lock.
File-system routes (ls, stat, mkdir, rename) live in ``fsroutes.py``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import parse_qs

from .auth import User
from .core import SimCore
from .engine import Task, TaskRequest
from .errors import ApiError, bad_request
from .filters import (
    order_tasks,
    page_window,
    parse_filters,
    parse_orderby,
    parse_time,
    task_id_candidates,
)
from .fsroutes import operation_ls, operation_mkdir, operation_rename, operation_stat
from .protocol import Reply, Request, result_reply
from .world import Collection

__all__ = ["AUTH_ROUTES", "TRANSFER_ROUTES", "Route"]

Handler = Callable[[SimCore, User | None, Request], Reply]
MARKER_PAGE = 100


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


def _ok(body: dict[str, Any], status: int = 200) -> Reply:
    return Reply(status=status, body=body)


def _user(user: User | None) -> User:
    assert user is not None, "Transfer routes are authenticated before they run"
    return user


def _task(core: SimCore, user: User | None, req: Request) -> Task:
    """The task the path names, if ``user`` owns it (404 otherwise)."""
    return core.owned_task(req.args["task_id"], _user(user))


def _flag(doc: dict[str, Any], name: str) -> bool:
    """The boolean option ``name`` of a submit (absent: false)."""
    value = doc.get(name)
    if isinstance(value, bool) or value is None:
        return bool(value)
    raise bad_request("InvalidField", f"{name} must be true or false, not {value!r}")


def _deadline(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise bad_request("InvalidField", "deadline must be an ISO 8601 time string")
    return parse_time(value).timestamp()


# Labels: at most 128 characters, no newlines, no leading or trailing whitespace
# (docs.globus.org/api/transfer/task_submit, "label"). The error code Globus answers with is
# not documented; 400 ClientError.BadRequest is the family every documented 400 belongs to.
MAX_LABEL = 128


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("", "label must be a string")
    if len(value) > MAX_LABEL:
        raise bad_request("", f"label must be at most {MAX_LABEL} characters, not {len(value)}")
    if "\n" in value or "\r" in value:
        raise bad_request("", "label must not contain newlines")
    if value != value.strip():
        raise bad_request("", "label must not begin or end with whitespace")
    return value


def _task_link(task_id: str) -> dict[str, str]:
    return {
        "DATA_TYPE": "link",
        "href": f"task/{task_id}?format=json",
        "rel": "related",
        "resource": "task",
        "title": "related task",
    }


# -- submission ------------------------------------------------------------------------
def get_submission_id(core: SimCore, user: User | None, req: Request) -> Reply:
    return _ok({"DATA_TYPE": "submission_id", "value": core.engine.new_submission_id()})


def _submit_body(req: Request, kind: str) -> tuple[dict[str, Any], str]:
    """The body of a ``kind`` ("transfer" or "delete") submit and its submission_id."""
    doc = req.json()
    if doc.get("DATA_TYPE", kind) != kind:
        raise bad_request("InvalidDataType", f"DATA_TYPE must be '{kind}'")
    sub_id = doc.get("submission_id")
    if not isinstance(sub_id, str) or not sub_id:
        raise bad_request(
            "MissingSubmissionId", "submission_id is required; get one from GET /submission_id"
        )
    return doc, sub_id


def _submit_items(doc: dict[str, Any], kind: str) -> list[Any]:
    """The DATA items of a ``kind`` submit (not yet checked one by one)."""
    items = doc.get("DATA") or []
    if not isinstance(items, list) or not items:
        raise bad_request(
            f"No{kind.capitalize()}Items", f"A {kind} needs at least one item in DATA"
        )
    return items


def _request(
    doc: dict[str, Any],
    kind: Literal["TRANSFER", "DELETE"],
    sub_id: str,
    source: Collection,
    items: list[Any],
) -> TaskRequest:
    """The fields every submit has; a submit adds its own with ``replace``."""
    return TaskRequest(
        type=kind,
        submission_id=sub_id,
        source_endpoint_id=source.id,
        source_display_name=source.display_name,
        label=_label(doc.get("label")),
        deadline=_deadline(doc.get("deadline")),
        items=tuple(dict(i) for i in items),
    )


def _submit(
    core: SimCore, user: User, req: Request, request: TaskRequest, result_type: str
) -> Reply:
    task, duplicate = core.engine.submit(
        request, owner=user.name, owner_id=user.user_id, now=core.clock()
    )
    code = "Duplicate" if duplicate else "Accepted"
    message = (
        f"A {request.type.lower()} request with submission id {request.submission_id} was "
        "already accepted; this is that task."
        if duplicate
        else f"The {request.type.lower()} has been accepted and a task has been created and "
        "queued for execution"
    )
    return result_reply(
        req,
        code=code,
        message=message,
        data_type=result_type,
        status=200 if duplicate else 202,
        submission_id=request.submission_id,
        task_id=task.task_id,
        task_link=_task_link(task.task_id),
    )


def submit_transfer(core: SimCore, user: User | None, req: Request) -> Reply:
    u = _user(user)
    doc, sub_id = _submit_body(req, "transfer")
    src = core.collection(str(doc.get("source_endpoint", "")))
    dst = core.collection(str(doc.get("destination_endpoint", "")))
    items = _submit_items(doc, "transfer")
    for item in items:
        if not isinstance(item, dict) or item.get("DATA_TYPE", "transfer_item") != "transfer_item":
            raise bad_request("InvalidItem", "Every DATA entry must be a transfer_item object")
        if not item.get("source_path") or not item.get("destination_path"):
            raise bad_request(
                "InvalidItem", "Every transfer_item needs source_path and destination_path"
            )
    sync = doc.get("sync_level")
    if sync is not None and (isinstance(sync, bool) or sync not in (0, 1, 2, 3)):
        raise bad_request("InvalidField", f"sync_level must be 0, 1, 2 or 3, not {sync!r}")
    core.require_consent(u, src)
    core.require_consent(u, dst)
    request = replace(
        _request(doc, "TRANSFER", sub_id, src, items),
        destination_endpoint_id=dst.id,
        destination_display_name=dst.display_name,
        sync_level=sync,
        verify_checksum=_flag(doc, "verify_checksum"),
        preserve_timestamp=_flag(doc, "preserve_timestamp"),
        encrypt_data=_flag(doc, "encrypt_data"),
        skip_source_errors=_flag(doc, "skip_source_errors"),
        fail_on_quota_errors=_flag(doc, "fail_on_quota_errors"),
        delete_destination_extra=_flag(doc, "delete_destination_extra"),
    )
    return _submit(core, u, req, request, "transfer_result")


def submit_delete(core: SimCore, user: User | None, req: Request) -> Reply:
    u = _user(user)
    doc, sub_id = _submit_body(req, "delete")
    coll = core.collection(str(doc.get("endpoint", "")))
    items = _submit_items(doc, "delete")
    for item in items:
        if not isinstance(item, dict) or not item.get("path"):
            raise bad_request("InvalidItem", "Every delete_item needs a path")
    core.require_consent(u, coll)
    request = replace(
        _request(doc, "DELETE", sub_id, coll, items),
        recursive=_flag(doc, "recursive"),
        ignore_missing=_flag(doc, "ignore_missing"),
    )
    return _submit(core, u, req, request, "delete_result")


# -- tasks -----------------------------------------------------------------------------
def get_task(core: SimCore, user: User | None, req: Request) -> Reply:
    task = _task(core, user, req)
    return _ok(core.engine.document(task, core.clock()))


def update_task(core: SimCore, user: User | None, req: Request) -> Reply:
    task = _task(core, user, req)
    doc = req.json()
    if task.done:
        raise ApiError(
            409,
            "ClientError.Conflict",
            f"Task {task.task_id} is complete ({task.status}) and cannot be updated",
        )
    label = _label(doc.get("label"))
    core.engine.update(task.task_id, label=label, deadline=_deadline(doc.get("deadline")))
    return result_reply(req, code="Updated", message="Updated task successfully")


def cancel_task(core: SimCore, user: User | None, req: Request) -> Reply:
    task = _task(core, user, req)
    code, message = core.engine.cancel(task.task_id, now=core.clock())
    return result_reply(req, code=code, message=message)


def task_list(core: SimCore, user: User | None, req: Request) -> Reply:
    u = _user(user)
    preds = parse_filters(req.params.get("filter", []))
    orderby = parse_orderby(req.param("orderby"))
    limit, offset = page_window(req.param("limit"), req.param("offset"), default_limit=10)
    now = core.clock()
    wanted = task_id_candidates(req.params.get("filter", []))
    cap = core.config.max_filter_task_ids
    if wanted is not None and cap is not None and len(wanted) > cap:
        # Globus documents no maximum for task_list (endpoint_manager_task_list documents
        # 50); the cap and this answer are the simulator's choice: see docs/simulator.md.
        raise bad_request(
            "InvalidFilter",
            f"filter task_id names {len(wanted)} tasks; at most {cap} are allowed",
        )
    tasks = core.engine.tasks(owner=u.name)
    if wanted is not None:
        # The poller's bulk query names its tasks: render only those.
        tasks = [t for t in tasks if t.task_id in wanted]
    if orderby[0][1]:
        # Timestamps have whole seconds; a descending order puts later submissions first
        # among equal keys, as the stable sort keeps the input order of ties.
        tasks.reverse()
    docs = [core.engine.document(t, now) for t in tasks]
    docs = [d for d in docs if all(p(d) for p in preds)]
    return _offset_page(order_tasks(docs, orderby), "task_list", limit=limit, offset=offset)


def task_event_list(core: SimCore, user: User | None, req: Request) -> Reply:
    task = _task(core, user, req)
    limit, offset = page_window(req.param("limit"), req.param("offset"), default_limit=10)
    events = [e.document() for e in reversed(task.events)]
    filters = req.params.get("filter", [])
    if any(f.strip() == "is_error:1" for f in filters):
        events = [e for e in events if e["is_error"]]
    elif any(f.strip() == "is_error:0" for f in filters):
        events = [e for e in events if not e["is_error"]]
    return _offset_page(events, "event_list", limit=limit, offset=offset)


def _offset_page(rows: list[dict[str, Any]], data_type: str, *, limit: int, offset: int) -> Reply:
    page = rows[offset : offset + limit]
    return _ok(
        {
            "DATA_TYPE": data_type,
            "DATA": page,
            "length": len(page),
            "limit": limit,
            "offset": offset,
            "total": len(rows),
        }
    )


def _marker_page(req: Request, rows: list[dict[str, Any]], data_type: str) -> Reply:
    raw = req.param("marker")
    try:
        start = int(raw) if raw not in (None, "") else 0
    except ValueError:
        raise bad_request("InvalidMarker", f"marker {raw!r} is not one this server gave") from None
    if start < 0 or start > len(rows):
        raise bad_request("InvalidMarker", f"marker {raw!r} is not one this server gave")
    end = start + MARKER_PAGE
    return _ok(
        {
            "DATA_TYPE": data_type,
            "marker": start,
            "next_marker": end if end < len(rows) else None,
            "DATA": rows[start:end],
        }
    )


def task_successful_transfers(core: SimCore, user: User | None, req: Request) -> Reply:
    task = _task(core, user, req)
    if task.request.type != "TRANSFER":
        raise bad_request("", "successful_transfers is only available for transfer tasks")
    if not task.done:
        # globus-sdk issue 288: (400, 'ClientError.BadRequest', "Task '<id>' is still in
        # progress, successful transfers are not yet available").
        raise bad_request(
            "",
            f"Task '{task.task_id}' is still in progress, successful transfers are not yet "
            "available",
        )
    rows = [
        {"DATA_TYPE": "successful_transfer", "source_path": s, "destination_path": d}
        for s, d in task.successful
    ]
    return _marker_page(req, rows, "successful_transfers")


def task_skipped_errors(core: SimCore, user: User | None, req: Request) -> Reply:
    task = _task(core, user, req)
    if task.request.type != "TRANSFER":
        raise bad_request("", "skipped_errors is only available for transfer tasks")
    return _marker_page(req, [dict(e) for e in task.skipped_errors], "skipped_errors")


def task_pause_info(core: SimCore, user: User | None, req: Request) -> Reply:
    """The pause rules that hold a task (docs: task page, "Limited pause rule document";
    CLI test test_task_pause_info.py: top-level ``message`` and ``endpoint_display_name``,
    rules with the administrator's ``message``)."""
    task = _task(core, user, req)
    rules = []
    if task.paused:
        rules.append(
            {
                "DATA_TYPE": "pause_rule_limited",
                "id": task.task_id,
                "message": task.pause_message,
                "start_time": None,
                "endpoint_id": task.request.source_endpoint_id,
                "endpoint_display_name": task.request.source_display_name,
                "identity_id": None,
                "modified_by_id": None,
                "created_by_host_manager": False,
                "editable": False,
                "pause_ls": False,
                "pause_mkdir": False,
                "pause_rename": False,
                "pause_task_delete": True,
                "pause_task_transfer_read": True,
                "pause_task_transfer_write": True,
            }
        )
    return _ok(
        {
            "DATA_TYPE": "pause_info_limited",
            "pause_rules": rules,
            "message": task.pause_message if task.paused else None,
            "endpoint_display_name": task.request.source_display_name if task.paused else None,
            "source_pause_message": task.pause_message if task.paused else None,
            "destination_pause_message": None,
            "source_pause_message_share": None,
            "destination_pause_message_share": None,
        }
    )


# -- endpoints -------------------------------------------------------------------------
def endpoint_search(core: SimCore, user: User | None, req: Request) -> Reply:
    text = (req.param("filter_fulltext") or "").lower()
    scope = req.param("filter_scope") or "all"
    entity = req.param("filter_entity_type")
    limit, offset = page_window(req.param("limit"), req.param("offset"), default_limit=25, cap=1000)
    if limit > 100:
        raise bad_request("InvalidPaging", f"limit must be between 1 and 100, not {limit}")
    found = []
    if scope in ("all", "public"):
        for coll in core.world.collections.values():
            haystack = f"{coll.display_name} {coll.description} {coll.id}".lower()
            if text and not all(word in haystack for word in text.split()):
                continue
            if entity and coll.entity_type != entity:
                continue
            found.append(coll.document())
    page = found[offset : offset + limit]
    return _ok(
        {
            "DATA_TYPE": "endpoint_list",
            "DATA": page,
            "has_next_page": offset + limit < len(found),
            "limit": limit,
            "offset": offset,
        }
    )


def get_endpoint(core: SimCore, user: User | None, req: Request) -> Reply:
    return _ok(core.collection(req.args["endpoint_id"]).document())


# -- auth ------------------------------------------------------------------------------
def _form(req: Request) -> dict[str, str]:
    try:
        parsed = parse_qs(req.body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "The form body is not UTF-8") from None
    return {k: v[-1] for k, v in parsed.items()}


def _basic(req: Request) -> tuple[str, str] | None:
    scheme, _, value = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "invalid_client", "Malformed Basic authorization header") from None
    return client_id, secret


def oauth2_token(core: SimCore, user: User | None, req: Request) -> Reply:
    form = _form(req)
    grant = form.get("grant_type")
    basic = _basic(req)
    now = core.clock()
    if grant == "refresh_token":
        client_id = basic[0] if basic else form.get("client_id")
        if basic:
            core.users.user_of_client(*basic)
        refresh = form.get("refresh_token", "")
        name = core.users.user_of_refresh(refresh, client_id)
        return _ok(core.users.token_response(name, now=now, refresh_token=refresh))
    if grant == "client_credentials":
        if basic is None:
            raise ApiError(
                401,
                "invalid_client",
                "client_credentials needs HTTP Basic auth with client id and secret",
            )
        name = core.users.user_of_client(*basic)
        return _ok(core.users.token_response(name, now=now, scope=form.get("scope") or None))
    raise ApiError(
        400,
        "unsupported_grant_type",
        f"grant_type {grant!r} is not supported; use refresh_token or client_credentials",
    )


def oauth2_token_validate(core: SimCore, user: User | None, req: Request) -> Reply:
    form = _form(req)
    token = form.get("token")
    if not token:
        raise ApiError(400, "invalid_request", "token is required")
    return _ok({"active": core.users.is_active(token, now=core.clock())})


def _route(method: str, path: str, name: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}/?$"), name, handler)


TRANSFER_ROUTES = [
    _route("GET", "/v0.10/submission_id", "get_submission_id", get_submission_id),
    _route("POST", "/v0.10/transfer", "submit_transfer", submit_transfer),
    _route("POST", "/v0.10/delete", "submit_delete", submit_delete),
    _route("GET", "/v0.10/task_list", "task_list", task_list),
    _route("GET", "/v0.10/task/{task_id}", "get_task", get_task),
    _route("PUT", "/v0.10/task/{task_id}", "update_task", update_task),
    _route("POST", "/v0.10/task/{task_id}/cancel", "cancel_task", cancel_task),
    _route("GET", "/v0.10/task/{task_id}/event_list", "task_event_list", task_event_list),
    _route("GET", "/v0.10/task/{task_id}/pause_info", "task_pause_info", task_pause_info),
    _route(
        "GET",
        "/v0.10/task/{task_id}/successful_transfers",
        "task_successful_transfers",
        task_successful_transfers,
    ),
    _route(
        "GET", "/v0.10/task/{task_id}/skipped_errors", "task_skipped_errors", task_skipped_errors
    ),
    _route("GET", "/v0.10/operation/endpoint/{endpoint_id}/ls", "operation_ls", operation_ls),
    _route("GET", "/v0.10/operation/endpoint/{endpoint_id}/stat", "operation_stat", operation_stat),
    _route(
        "POST", "/v0.10/operation/endpoint/{endpoint_id}/mkdir", "operation_mkdir", operation_mkdir
    ),
    _route(
        "POST",
        "/v0.10/operation/endpoint/{endpoint_id}/rename",
        "operation_rename",
        operation_rename,
    ),
    _route("GET", "/v0.10/endpoint_search", "endpoint_search", endpoint_search),
    _route("GET", "/v0.10/endpoint/{endpoint_id}", "get_endpoint", get_endpoint),
]

AUTH_ROUTES = [
    _route("POST", "/v2/oauth2/token", "oauth2_token", oauth2_token),
    _route("POST", "/v2/oauth2/token/validate", "oauth2_token_validate", oauth2_token_validate),
]
