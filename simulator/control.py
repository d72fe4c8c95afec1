"""The ``/_sim/`` control routes: the Python control API over HTTP, for a simulator that runs
as a subprocess (``orbit-globus-sim``). They need no token: the simulator only listens on
127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .core import SimCore
from .errors import ApiError, UnknownTask, bad_request
from .faults import Fault
from .protocol import Reply, Request

__all__ = ["CONTROL_PREFIX", "control"]

CONTROL_PREFIX = "/_sim/"
ControlHandler = Callable[[SimCore, Request], dict[str, Any]]


def _num(doc: dict[str, Any], key: str, default: float | None) -> float | None:
    value = doc.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request("InvalidField", f"{key} must be a number, not {value!r}")
    return float(value)


def _health(core: SimCore, req: Request) -> dict[str, Any]:
    return {"ok": True, "users": core.users.names(), "collections": sorted(core.world.collections)}


def _add_user(core: SimCore, req: Request) -> dict[str, Any]:
    doc = req.json()
    name = doc.get("name")
    consents = doc.get("consents", [])
    if not isinstance(name, str) or not isinstance(consents, list):
        raise bad_request("InvalidField", "give 'name' (string) and 'consents' (list of ids)")
    try:
        creds = core.add_user(name, [str(c) for c in consents])
    except ValueError as exc:
        raise ApiError(409, "ClientError.Conflict", str(exc)) from None
    return asdict(creds)


def _consent(core: SimCore, req: Request, grant: bool) -> dict[str, Any]:
    name = req.args["name"]
    collection_id = req.args.get("collection_id") or str(req.json().get("collection_id", ""))
    if not collection_id:
        raise bad_request("InvalidField", "give the 'collection_id' to consent to")
    try:
        if grant:
            core.users.grant(name, collection_id)
        else:
            core.users.revoke(name, collection_id)
    except KeyError:
        raise ApiError(404, "ClientError.NotFound", f"no user {name!r}") from None
    return {"user": name, "collection_id": collection_id, "consented": grant}


def _add_fault(core: SimCore, req: Request) -> dict[str, Any]:
    doc = req.json()
    count = doc.get("count", 1)
    status = doc.get("status")
    retry_after = doc.get("retry_after")
    try:
        fault = Fault(
            route=str(doc.get("route", "")),
            status=int(status) if status is not None else None,
            count=int(count) if count is not None else None,
            fraction=_num(doc, "fraction", 1.0) or 1.0,
            delay=_num(doc, "delay", 0.0) or 0.0,
            retry_after=int(retry_after) if retry_after is not None else None,
            code=doc.get("code"),
        )
        core.schedule_fault(fault)
    except (TypeError, ValueError) as exc:
        raise bad_request("InvalidFault", str(exc)) from None
    return {"scheduled": True, "route": fault.route}


def _clear_faults(core: SimCore, req: Request) -> dict[str, Any]:
    core.faults.clear()
    return {"cleared": True}


def _latency(core: SimCore, req: Request) -> dict[str, Any]:
    if req.method == "PUT":
        seconds = _num(req.json(), "seconds", None)
        if seconds is None or seconds < 0:
            raise bad_request("InvalidField", "give 'seconds' >= 0")
        core.latency = seconds
    return {"latency": core.latency}


def _expire(core: SimCore, req: Request) -> dict[str, Any]:
    token = req.json().get("token")
    if not isinstance(token, str) or not token:
        raise bad_request("InvalidField", "give the access 'token' (or a user name) to expire")
    if not core.users.expire(token):
        raise ApiError(404, "ClientError.NotFound", "no such access token or user")
    return {"expired": True}


def _tasks(core: SimCore, req: Request) -> dict[str, Any]:
    return {"tasks": core.documents()}


def _task(core: SimCore, req: Request) -> dict[str, Any]:
    return core.document(req.args["task_id"])


def _given(doc: dict[str, Any], *keys: str) -> dict[str, str]:
    """The texts among ``keys`` that the request gave: the engine's defaults stand for the rest."""
    return {key: str(doc[key]) for key in keys if key in doc}


def _task_action(core: SimCore, req: Request) -> dict[str, Any]:
    task_id, action = req.args["task_id"], req.args["action"]
    doc = req.json()
    core.check_task(task_id)
    with core.locked() as (engine, now):
        if action == "pause":
            changed = engine.pause(task_id, now=now, **_given(doc, "nice_status", "message"))
        elif action in ("unpause", "resume"):
            changed = engine.unpause(task_id, now=now)
        elif action == "expire_credential":
            changed = engine.expire_credential(
                task_id, now=now, **_given(doc, "nice_status", "message")
            )
        elif action == "renew_credential":
            changed = engine.renew_credential(task_id, now=now)
        elif action == "fail":
            changed = core.fail(
                task_id,
                code=str(doc.get("code", "FAILED")),
                description=str(doc.get("description", "The task failed")),
            )
        elif action == "finish":
            changed = bool(core.finish([task_id]))
        else:
            raise ApiError(
                404,
                "ClientError.NotFound",
                f"unknown task action {action!r}; use pause, unpause, expire_credential, "
                "renew_credential, fail or finish",
            )
    return {"task_id": task_id, "changed": changed, "task": core.document(task_id)}


def _str_or_none(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request("InvalidField", f"{key} must be a non-empty string")
    return value


def _inject_error(core: SimCore, req: Request) -> dict[str, Any]:
    doc = req.json()
    code = _str_or_none(doc, "code")
    if code is None:
        raise bad_request("InvalidField", "give the error 'code', e.g. PERMISSION_DENIED")
    task_id = _str_or_none(doc, "task_id")
    if task_id is not None:
        core.check_task(task_id)
    heal_count = doc.get("heal_count")
    if heal_count is not None and (isinstance(heal_count, bool) or not isinstance(heal_count, int)):
        raise bad_request("InvalidField", "heal_count must be an integer")
    try:
        with core.locked() as (engine, now):
            rule = engine.inject_error(
                code=code,
                now=now,
                task_id=task_id,
                path=_str_or_none(doc, "path"),
                details=str(doc.get("details") or ""),
                heal_after=_num(doc, "heal_after", None),
                heal_count=heal_count,
            )
    except ValueError as exc:
        raise bad_request("InvalidField", str(exc)) from None
    return rule.document()


def _errors(core: SimCore, req: Request) -> dict[str, Any]:
    if req.method == "DELETE":
        return {"removed": core.heal_errors(req.args.get("rule_id"))}
    with core.lock:
        return {"errors": [r.document() for r in core.engine.rules()]}


def _clock(core: SimCore, req: Request) -> dict[str, Any]:
    if req.method == "PUT":
        scale = _num(req.json(), "scale", None)
        if scale is None or scale <= 0:
            raise bad_request("InvalidField", "give 'scale' > 0")
        core.sim_clock.scale = scale
    elif req.method == "POST":
        seconds = _num(req.json(), "seconds", None)
        if seconds is None or seconds < 0:
            raise bad_request("InvalidField", "give 'seconds' >= 0 to advance the clock by")
        core.advance_clock(seconds)
    return {
        "now": core.clock(),
        "scale": core.sim_clock.scale,
        "offset": core.sim_clock.offset,
    }


def _finish_all(core: SimCore, req: Request) -> dict[str, Any]:
    return {"finished": core.finish_all()}


def _counts(core: SimCore, req: Request) -> dict[str, Any]:
    with core.lock:
        counts = dict(core.counts)
        if req.method == "DELETE":
            core.counts.clear()
    return {"counts": counts}


def _r(
    method: str, path: str, handler: ControlHandler
) -> tuple[str, re.Pattern[str], ControlHandler]:
    return method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$"), handler


_ROUTES = [
    _r("GET", "/_sim/health", _health),
    _r("POST", "/_sim/users", _add_user),
    _r("POST", "/_sim/users/{name}/consents", lambda c, r: _consent(c, r, True)),
    _r("DELETE", "/_sim/users/{name}/consents/{collection_id}", lambda c, r: _consent(c, r, False)),
    _r("POST", "/_sim/faults", _add_fault),
    _r("DELETE", "/_sim/faults", _clear_faults),
    _r("GET", "/_sim/latency", _latency),
    _r("PUT", "/_sim/latency", _latency),
    _r("POST", "/_sim/tokens/expire", _expire),
    _r("GET", "/_sim/tasks", _tasks),
    _r("POST", "/_sim/finish_all", _finish_all),
    _r("GET", "/_sim/tasks/{task_id}", _task),
    _r("POST", "/_sim/tasks/{task_id}/{action}", _task_action),
    _r("POST", "/_sim/errors", _inject_error),
    _r("GET", "/_sim/errors", _errors),
    _r("DELETE", "/_sim/errors", _errors),
    _r("DELETE", "/_sim/errors/{rule_id}", _errors),
    _r("GET", "/_sim/clock", _clock),
    _r("PUT", "/_sim/clock", _clock),
    _r("POST", "/_sim/clock/advance", _clock),
    _r("GET", "/_sim/counts", _counts),
    _r("DELETE", "/_sim/counts", _counts),
]


def control(core: SimCore, req: Request) -> Reply:
    """Answer one ``/_sim/`` request."""
    for method, pattern, handler in _ROUTES:
        m = pattern.match(req.path)
        if m and method == req.method:
            req.args = m.groupdict()
            try:
                return Reply(status=200, body=handler(core, req))
            except UnknownTask as exc:
                raise ApiError(404, "ClientError.NotFound", str(exc)) from None
    raise ApiError(
        404,
        "ClientError.NotFound",
        f"no control route {req.method} {req.path}; see docs/simulator.md",
    )
