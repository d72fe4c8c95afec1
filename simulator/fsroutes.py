"""Handlers of the Transfer ``operation/endpoint/{id}/...`` routes: ls, stat, mkdir, rename.

They act on the collection's local folder at once, as Globus does for these synchronous
operations.
"""

from __future__ import annotations

import os
import re
import stat as statmod
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ApiError, bad_request
from .protocol import Reply, Request, result_reply

if TYPE_CHECKING:
    from .auth import User
    from .core import SimCore
    from .world import Collection

__all__ = ["file_document", "operation_ls", "operation_mkdir", "operation_rename", "operation_stat"]

_LS_ORDER = frozenset({"name", "type", "size", "last_modified", "permissions"})


def file_document(path: Path, name: str) -> dict[str, Any]:
    """The Transfer ``file`` document of a local file."""
    st = path.lstat()
    link_target = None
    kind = "file"
    if statmod.S_ISLNK(st.st_mode):
        link_target = os.readlink(path)
        try:
            st = path.stat()
        except OSError:
            kind = "invalid_symlink"
    if kind != "invalid_symlink":
        kind = "dir" if statmod.S_ISDIR(st.st_mode) else "file"
    return {
        "DATA_TYPE": "file",
        "name": name,
        "type": kind,
        "link_target": link_target,
        "permissions": format(statmod.S_IMODE(st.st_mode), "04o"),
        "size": st.st_size,
        "user": "simuser",
        "group": "simgroup",
        "last_modified": datetime.fromtimestamp(int(st.st_mtime), tz=UTC).strftime(
            "%Y-%m-%d %H:%M:%S+00:00"
        ),
    }


def _target(
    core: SimCore, user: User | None, endpoint_id: str, path: str | None
) -> tuple[Collection, str, Path]:
    assert user is not None
    coll = core.collection(endpoint_id)
    core.require_consent(user, coll)
    vpath = coll.virtual(path, user.name)
    return coll, vpath, coll.local(vpath)


def _username(user: User | None) -> str:
    assert user is not None
    return user.name


def _not_found(coll: Collection, vpath: str) -> ApiError:
    return ApiError(
        404, "ClientError.NotFound", f"Path not found on {coll.display_name} ({coll.id}): {vpath}"
    )


def _require_free(coll: Collection, vpath: str, local: Path, *, failure: str, what: str) -> None:
    """502 ``ExternalError.<failure>.Exists`` when ``local`` exists, ``.NotFound`` when its
    parent folder does not: a new name ``mkdir`` or ``rename`` may create."""
    if local.exists():
        raise ApiError(
            502,
            f"ExternalError.{failure}.Exists",
            f"{what} already exists on {coll.display_name}: {vpath}",
        )
    if not local.parent.is_dir():
        raise ApiError(
            502,
            f"ExternalError.{failure}.NotFound",
            f"Parent folder of {vpath} does not exist on {coll.display_name}",
        )


def _name_predicate(spec: str) -> Any:
    negate = spec.startswith("!")
    body = spec[1:] if negate else spec
    if body.startswith("~"):
        regex = re.compile(".*".join(re.escape(p) for p in body[1:].split("*")), re.IGNORECASE)

        def match(name: str) -> bool:
            return regex.fullmatch(name) is not None
    else:
        exact = body[1:] if body.startswith("=") else body

        def match(name: str) -> bool:
            return name == exact

    return (lambda name: not match(name)) if negate else match


def _ls_filter(text: str) -> list[Any]:
    preds = []
    for clause in text.split("/"):
        if not clause.strip():
            continue
        key, sep, spec = clause.partition(":")
        if not sep:
            raise bad_request("InvalidFilter", f"ls filter {clause!r} must look like 'key:value'")
        if key == "name":
            pred = _name_predicate(spec)
            preds.append(lambda doc, p=pred: p(doc["name"]))
        elif key == "type":
            kinds = {k.strip() for k in spec.split(",")}
            preds.append(lambda doc, k=kinds: doc["type"] in k)
        else:
            raise bad_request("InvalidFilter", f"ls can filter on name and type, not {key!r}")
    return preds


def operation_ls(core: SimCore, user: User | None, req: Request) -> Reply:
    coll, vpath, local = _target(core, user, req.args["endpoint_id"], req.param("path"))
    if not local.exists():
        raise _not_found(coll, vpath)
    if not local.is_dir():
        raise ApiError(
            502,
            "ExternalError.DirListingFailed.NotDirectory",
            f"{vpath} on {coll.display_name} is not a directory",
        )
    show_hidden = (req.param("show_hidden") or "1").lower() not in ("0", "false", "no")
    docs = []
    for entry in sorted(os.listdir(local)):
        if entry.endswith(".sim-partial") or (not show_hidden and entry.startswith(".")):
            continue
        docs.append(file_document(local / entry, entry))
    for text in req.params.get("filter", []):
        for pred in _ls_filter(text):
            docs = [d for d in docs if pred(d)]
    for part in reversed((req.param("orderby") or "").split(",")):
        words = part.split()
        if not words:
            continue
        if words[0] not in _LS_ORDER or (
            len(words) > 1 and words[1].upper() not in ("ASC", "DESC")
        ):
            raise bad_request("InvalidOrderBy", f"cannot order a listing by {part.strip()!r}")
        desc = len(words) > 1 and words[1].upper() == "DESC"
        field = words[0]
        docs.sort(key=lambda d: d[field], reverse=desc)
    total = len(docs)
    try:
        offset = int(req.param("offset") or 0)
        limit = int(req.param("limit") or 100000)
    except ValueError:
        raise bad_request("InvalidPaging", "limit and offset must be integers") from None
    if offset < 0 or limit < 1:
        raise bad_request("InvalidPaging", "offset must be >= 0 and limit >= 1")
    page = docs[offset : offset + limit]
    # ``path`` as the request gave it (``/~/`` kept: CLI fixtures), ``absolute_path`` resolved.
    # Without a path the listing is of the home folder, shown resolved.
    absolute = vpath if vpath.endswith("/") else vpath + "/"
    given = coll.display(req.param("path"), _username(user)) if req.param("path") else absolute
    shown = given if given.endswith("/") else given + "/"
    return Reply(
        status=200,
        body={
            "DATA_TYPE": "file_list",
            "path": shown,
            "absolute_path": absolute,
            "endpoint": coll.id,
            "rename_supported": True,
            "symlink_supported": False,
            "length": len(page),
            "total": total,
            "limit": limit,
            "offset": offset,
            "DATA": page,
        },
    )


def operation_stat(core: SimCore, user: User | None, req: Request) -> Reply:
    coll, vpath, local = _target(core, user, req.args["endpoint_id"], req.param("path"))
    if not local.exists() and not local.is_symlink():
        raise _not_found(coll, vpath)
    name = vpath.rstrip("/").rsplit("/", 1)[-1] or "/"
    return Reply(status=200, body=file_document(local, name))


def operation_mkdir(core: SimCore, user: User | None, req: Request) -> Reply:
    doc = req.json()
    if not doc.get("path"):
        raise bad_request("MissingPath", "mkdir needs a 'path'")
    coll, vpath, local = _target(core, user, req.args["endpoint_id"], str(doc["path"]))
    _require_free(coll, vpath, local, failure="MkdirFailed", what="Path")
    local.mkdir()
    return result_reply(
        req,
        code="DirectoryCreated",
        message="The directory was created successfully",
        data_type="mkdir_result",
        status=202,
    )


def operation_rename(core: SimCore, user: User | None, req: Request) -> Reply:
    doc = req.json()
    if not doc.get("old_path") or not doc.get("new_path"):
        raise bad_request("MissingPath", "rename needs 'old_path' and 'new_path'")
    coll, old_v, old = _target(core, user, req.args["endpoint_id"], str(doc["old_path"]))
    _, new_v, new = _target(core, user, req.args["endpoint_id"], str(doc["new_path"]))
    if not old.exists() and not old.is_symlink():
        raise _not_found(coll, old_v)
    _require_free(coll, new_v, new, failure="RenameFailed", what="Destination")
    old.rename(new)
    return result_reply(req, code="FileRenamed", message="File or directory renamed successfully")
