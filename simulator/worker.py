"""The file side of the task engine: turn requests into steps, and perform steps.

Everything that touches the disk for a task lives here, so ``engine.py`` stays pure. A
failure is either *retryable* (the engine records a fault and tries again later: a missing
source, permission denied, a vanished file, a checksum mismatch, an injected error) or fatal
(the task fails at once: a delete of a missing path, a folder without ``recursive``), as
Globus handles them (docs.globus.org/api/transfer/task_behavior, "Errors").
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import SKIPPABLE_CODES, Engine, ErrorRule, Step, Task, iso_time
from .task import StepKind
from .world import Collection, World

__all__ = ["Plan", "PlanFailure", "expand", "perform"]


@dataclass(kw_only=True)
class Plan:
    steps: list[Step] = field(default_factory=list)
    files: int = 0
    directories: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: StepKind, spath: str, dpath: str, dlocal: Path) -> None:
        """A step without throughput cost (``copy`` steps carry their size: _add_file)."""
        self.steps.append(
            Step(
                kind=kind, source_path=spath, destination_path=dpath, destination_local=str(dlocal)
            )
        )


@dataclass(frozen=True, kw_only=True)
class PlanFailure:
    """Why a task could not be planned or a step not performed.

    ``retryable`` failures become faults (the task stays ACTIVE), the others fail the task.
    ``rule`` is the injected error rule that caused it, if any.
    """

    code: str
    description: str
    retryable: bool = False
    rule: ErrorRule | None = None


class _Context:
    """What planning needs besides the files: the engine's injected rules and the time."""

    def __init__(self, engine: Engine, task: Task, now: float) -> None:
        self.engine = engine
        self.task = task
        self.now = now

    def rule(self, path: str) -> ErrorRule | None:
        return self.engine.path_rule(self.task, path, self.now)

    def skipped(
        self, code: str, details: str, spath: str, dpath: str, is_dir: bool
    ) -> dict[str, Any]:
        # Shape of a skipped_error (CLI fixture skipped_error_list.yaml).
        return {
            "DATA_TYPE": "skipped_error",
            "checksum_algorithm": None,
            "destination_path": dpath,
            "error_code": code,
            "error_details": details,
            "error_time": iso_time(self.now),
            "external_checksum": None,
            "is_delete_destination_extra": False,
            "is_directory": is_dir,
            "is_symlink": False,
            "source_path": spath,
        }


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


def _source_error(
    ctx: _Context, plan: Plan, spath: str, dpath: str, *, missing: bool, is_dir: bool
) -> PlanFailure | None:
    """A missing or faulted source path: skipped with skip_source_errors (and a skippable
    code), else a retryable failure. None when the path is fine."""
    rule = ctx.rule(spath)
    if missing:
        code, details, rule = "FILE_NOT_FOUND", f"No such file or directory: {spath}", None
    elif rule is not None:
        code, details = rule.code, rule.details
    else:
        return None
    if ctx.task.request.skip_source_errors and code in SKIPPABLE_CODES:
        if rule is not None:
            rule.hits += 1
        plan.skipped_errors.append(ctx.skipped(code, details, spath, dpath, is_dir))
        return None
    return PlanFailure(code=code, description=details, retryable=True, rule=rule)


def _expand_transfer(ctx: _Context, src: Collection, dst: Collection) -> Plan | PlanFailure:
    task = ctx.task
    req = task.request
    plan = Plan()
    for item in req.items:
        raw_src = str(item.get("source_path", ""))
        raw_dst = str(item.get("destination_path", ""))
        spath, dpath = src.display(raw_src, task.owner), dst.display(raw_dst, task.owner)
        slocal = src.local(src.virtual(raw_src, task.owner))
        dlocal = dst.local(dst.virtual(raw_dst, task.owner))
        recursive = bool(item.get("recursive", False))
        missing = not slocal.exists()
        before = len(plan.skipped_errors)
        failure = _source_error(ctx, plan, spath, dpath, missing=missing, is_dir=recursive)
        if failure is not None:
            return failure
        if len(plan.skipped_errors) > before:
            continue
        if slocal.is_dir() != recursive:
            what = "a directory: set recursive" if slocal.is_dir() else "not a directory"
            return PlanFailure(
                code="INVALID_ITEM" if slocal.is_dir() else "NOT_A_DIRECTORY",
                description=f"Source path {spath} is {what}",
            )
        if not recursive:
            _add_file(plan, req.sync_level, spath, dpath, slocal, dlocal)
            continue
        plan.directories += 1
        plan.add("mkdir", spath, dpath, dlocal)
        for dirpath, dirnames, filenames in os.walk(slocal):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(slocal).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in dirnames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                plan.directories += 1
                plan.add("mkdir", _join(spath, rel), _join(dpath, rel), dlocal / rel)
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                sv, dv = _join(spath, rel), _join(dpath, rel)
                before = len(plan.skipped_errors)
                failure = _source_error(ctx, plan, sv, dv, missing=False, is_dir=False)
                if failure is not None:
                    return failure
                if len(plan.skipped_errors) == before:
                    _add_file(plan, req.sync_level, sv, dv, slocal / rel, dlocal / rel)
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


def _expand_delete(ctx: _Context, coll: Collection) -> Plan | PlanFailure:
    task = ctx.task
    req = task.request
    plan = Plan()
    for item in req.items:
        raw = str(item.get("path", ""))
        vpath = coll.virtual(raw, task.owner)
        shown = coll.display(raw, task.owner)
        local = coll.local(vpath)
        if vpath == "/" or vpath == coll.home_of(task.owner).rstrip("/"):
            return PlanFailure(code="PERMISSION_DENIED", description=f"Refusing to delete {shown}")
        rule = ctx.rule(shown)
        if rule is not None:
            return PlanFailure(code=rule.code, description=rule.details, retryable=True, rule=rule)
        if not local.exists() and not local.is_symlink():
            if req.ignore_missing:
                continue
            # A delete of a missing path fails at once (CLI fixture submit_delete_failed.yaml).
            return PlanFailure(code="FILE_NOT_FOUND", description=f"Path not found: {shown}")
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
        plan.add("delete", shown, shown, local)
    return plan


def expand(task: Task, world: World, *, engine: Engine, now: float) -> Plan | PlanFailure:
    """Work out the steps of ``task`` from the request and the files as they are now;
    ``engine`` holds the injected error rules that planning honours."""
    ctx = _Context(engine, task, now)
    req = task.request
    src = world.get(req.source_endpoint_id)
    if src is None:
        return PlanFailure(
            code="ENDPOINT_NOT_FOUND", description=f"Unknown collection {req.source_endpoint_id}"
        )
    if req.type == "DELETE":
        return _expand_delete(ctx, src)
    dst = world.get(req.destination_endpoint_id or "")
    if dst is None:
        return PlanFailure(
            code="ENDPOINT_NOT_FOUND",
            description=f"Unknown collection {req.destination_endpoint_id}",
        )
    try:
        return _expand_transfer(ctx, src, dst)
    except OSError as exc:
        return PlanFailure(code="PERMISSION_DENIED", description=str(exc.strerror), retryable=True)


def perform(engine: Engine, task: Task, step: Step, *, now: float) -> PlanFailure | None:
    """Do one step on the disk; a failure is returned, never raised."""
    for path in (step.source_path, step.destination_path):
        rule = engine.path_rule(task, path, now)
        if rule is not None:
            return PlanFailure(code=rule.code, description=rule.details, retryable=True, rule=rule)
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
            code="FILE_NOT_FOUND",
            description=f"Source path vanished: {step.source_path}",
            retryable=True,
        )
    except OSError as exc:
        return PlanFailure(
            code="PERMISSION_DENIED",
            description=f"{step.destination_path}: {exc.strerror}",
            retryable=True,
        )
    except _ChecksumMismatch:
        # The error code of a failed checksum verification (Globus staff's list of event
        # codes, 2020): retried like other faults.
        return PlanFailure(
            code="VERIFY_CHECKSUM",
            description=f"Checksum mismatch for {step.destination_path}",
            retryable=True,
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
