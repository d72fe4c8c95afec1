"""The file side of the task engine: turn requests into steps, and perform steps.

Everything that touches the disk for a task lives here, so ``engine.py`` stays pure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Engine, Step, Task
from .world import Collection, World

__all__ = ["Plan", "PlanFailure", "expand", "perform"]


@dataclass(kw_only=True)
class Plan:
    steps: list[Step] = field(default_factory=list)
    files: int = 0
    directories: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PlanFailure:
    code: str
    description: str


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _skip_by_sync(level: int | None, src: Path, dst: Path) -> bool:
    """True when sync_level says the destination is already good enough."""
    if level is None or not dst.is_file():
        return False
    if level == 0:
        return True
    s, d = src.stat(), dst.stat()
    if level == 1:
        return s.st_size == d.st_size
    if level == 2:
        # Globus copies when the source is newer; equal whole seconds count as up to date.
        return int(s.st_mtime) <= int(d.st_mtime)
    return _md5(src) == _md5(dst)


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel if rel else base


def _expand_transfer(task: Task, src: Collection, dst: Collection) -> Plan | PlanFailure:
    req = task.request
    plan = Plan()
    for item in req.items:
        spath = src.virtual(str(item.get("source_path", "")), task.owner)
        dpath = dst.virtual(str(item.get("destination_path", "")), task.owner)
        slocal = src.local(spath)
        recursive = bool(item.get("recursive", False))
        if not slocal.exists():
            if req.skip_source_errors:
                plan.skipped_errors.append(
                    {
                        "DATA_TYPE": "skipped_error",
                        "source_path": spath,
                        "destination_path": dpath,
                        "error_code": "FILE_NOT_FOUND",
                        "error_details": f"No such file or directory: {spath}",
                        "is_directory": recursive,
                        "error_time": None,
                    }
                )
                continue
            return PlanFailure(
                code="FILE_NOT_FOUND",
                description=f"Source path not found on {src.display_name}: {spath}",
            )
        if slocal.is_dir() != recursive:
            what = "a directory: set recursive" if slocal.is_dir() else "not a directory"
            return PlanFailure(
                code="INVALID_ITEM" if slocal.is_dir() else "NOT_A_DIRECTORY",
                description=f"Source path {spath} is {what}",
            )
        if not recursive:
            _add_file(plan, req.sync_level, spath, dpath, slocal, dst.local(dpath))
            continue
        plan.directories += 1
        plan.steps.append(
            Step(
                kind="mkdir",
                source_path=spath,
                destination_path=dpath,
                destination_local=str(dst.local(dpath)),
            )
        )
        for dirpath, dirnames, filenames in os.walk(slocal):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(slocal).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in dirnames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                plan.directories += 1
                plan.steps.append(
                    Step(
                        kind="mkdir",
                        source_path=_join(spath, rel),
                        destination_path=_join(dpath, rel),
                        destination_local=str(dst.local(_join(dpath, rel))),
                    )
                )
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                sv, dv = _join(spath, rel), _join(dpath, rel)
                _add_file(plan, req.sync_level, sv, dv, src.local(sv), dst.local(dv))
    return plan


def _add_file(
    plan: Plan, level: int | None, spath: str, dpath: str, slocal: Path, dlocal: Path
) -> None:
    plan.files += 1
    if _skip_by_sync(level, slocal, dlocal):
        plan.skipped.append((spath, dpath))
        return
    plan.steps.append(
        Step(
            kind="copy",
            source_path=spath,
            destination_path=dpath,
            size=slocal.stat().st_size,
            source_local=str(slocal),
            destination_local=str(dlocal),
        )
    )


def _expand_delete(task: Task, coll: Collection) -> Plan | PlanFailure:
    req = task.request
    plan = Plan()
    for item in req.items:
        vpath = coll.virtual(str(item.get("path", "")), task.owner)
        local = coll.local(vpath)
        if vpath == "/" or vpath == coll.home_of(task.owner).rstrip("/"):
            return PlanFailure(code="PERMISSION_DENIED", description=f"Refusing to delete {vpath}")
        if not local.exists() and not local.is_symlink():
            if req.ignore_missing:
                continue
            return PlanFailure(code="FILE_NOT_FOUND", description=f"Path not found: {vpath}")
        if local.is_dir() and not local.is_symlink():
            if not req.recursive:
                return PlanFailure(
                    code="NOT_A_FILE", description=f"{vpath} is a directory: set recursive"
                )
            for _, dirnames, filenames in os.walk(local):
                plan.directories += len(dirnames)
                plan.files += len(filenames)
            plan.directories += 1
        else:
            plan.files += 1
        plan.steps.append(
            Step(
                kind="delete",
                source_path=vpath,
                destination_path=vpath,
                destination_local=str(local),
            )
        )
    return plan


def expand(task: Task, world: World) -> Plan | PlanFailure:
    """Work out the steps of ``task`` from the request and the files as they are now."""
    req = task.request
    src = world.get(req.source_endpoint_id)
    if src is None:
        return PlanFailure(
            code="ENDPOINT_NOT_FOUND", description=f"Unknown collection {req.source_endpoint_id}"
        )
    if req.type == "DELETE":
        return _expand_delete(task, src)
    dst = world.get(req.destination_endpoint_id or "")
    if dst is None:
        return PlanFailure(
            code="ENDPOINT_NOT_FOUND",
            description=f"Unknown collection {req.destination_endpoint_id}",
        )
    try:
        return _expand_transfer(task, src, dst)
    except OSError as exc:
        return PlanFailure(code="PERMISSION_DENIED", description=str(exc.strerror))


def perform(engine: Engine, task: Task, step: Step) -> PlanFailure | None:
    """Do one step on the disk; a failure is returned, never raised."""
    try:
        if step.kind == "mkdir":
            Path(step.destination_local).mkdir(parents=True, exist_ok=True)
        elif step.kind == "delete":
            target = Path(step.destination_local)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        else:
            _copy(engine, task, step)
    except FileNotFoundError:
        return PlanFailure(
            code="FILE_NOT_FOUND", description=f"Source path vanished: {step.source_path}"
        )
    except OSError as exc:
        return PlanFailure(
            code="PERMISSION_DENIED", description=f"{step.destination_path}: {exc.strerror}"
        )
    except _ChecksumMismatch:
        return PlanFailure(
            code="CHECKSUM_MISMATCH", description=f"Checksum mismatch for {step.destination_path}"
        )
    return None


class _ChecksumMismatch(Exception):
    pass


def _copy(engine: Engine, task: Task, step: Step) -> None:
    src, dst = Path(step.source_local), Path(step.destination_local)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename, so a reader never sees half a file.
    tmp = dst.with_name(f".{dst.name}.sim-partial")
    shutil.copyfile(src, tmp)
    if task.request.preserve_timestamp:
        st = src.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    if task.request.verify_checksum:
        if _md5(src) != _md5(tmp):
            tmp.unlink(missing_ok=True)
            raise _ChecksumMismatch
        engine.record_checksum(task.task_id, step.size)
    os.replace(tmp, dst)
