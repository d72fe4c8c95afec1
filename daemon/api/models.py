"""Request bodies of the HTTP API (validated by FastAPI; unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ...protocol import TaskStatus

__all__ = [
    "MAX_INT",
    "DeleteBody",
    "HistoryQuery",
    "MkdirBody",
    "PolicyBody",
    "RegisterBody",
    "RenameBody",
    "TransferBody",
    "TransferItemBody",
    "WaitBody",
]

# SQLite integers are 64-bit: a larger offset or seq would fail in the ledger, not here.
MAX_INT = 2**63 - 1

Path_ = Annotated[str, Field(min_length=1, max_length=4096)]
Collection = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description='a collection UUID, or "local" for the local collection',
    ),
]
Label = Annotated[str, Field(max_length=128, pattern=r"^[^\x00-\x1f]*$")]
# Globus submission ids are UUIDs (GET /submission_id answers one; globus-sdk
# TransferData(submission_id=...)); a client may bring its own to make a submit idempotent.
SubmissionId = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="a UUID naming this submit: repeating it never submits twice",
    ),
]
_SYNC_NAMES = ("exists", "size", "mtime", "checksum")


class _Body(BaseModel):
    # strict: JSON types are taken as sent ({"recursive": 1}, {"timeout": false} and
    # {"label": 5} are refused with a message naming the field, not silently converted).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)


class HistoryQuery(BaseModel):
    """The query of GET /globus/history: which of the token's events or tasks (of one
    session, one task or submission id, one status, a label -- a glob when it has glob
    characters --, requested or recorded within since..until) and which page of them."""

    session_id: str | None = None
    task_id: str | None = None
    status: TaskStatus | None = None
    label: Annotated[str | None, Field(max_length=128)] = None
    since: float | None = None
    until: float | None = None
    after: Annotated[int, Field(ge=0, le=MAX_INT)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_INT)] = 0
    view: Literal["events", "tasks"] = "events"


class PolicyBody(_Body):
    """When the daemon cancels a task in trouble on its own; at least one condition."""

    max_faults: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_trouble_minutes: Annotated[float, Field(gt=0, le=525_600)] | None = None
    # Globus event codes, e.g. FILE_NOT_FOUND, PERMISSION_DENIED.
    fatal_codes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9_]+$")]],
        Field(max_length=32),
    ] = []

    @model_validator(mode="after")
    def _some_condition(self) -> PolicyBody:
        if self.max_faults is None and self.max_trouble_minutes is None and not self.fatal_codes:
            raise ValueError("give max_faults, max_trouble_minutes or fatal_codes")
        return self


class RegisterBody(_Body):
    # SecretStr: even a stray repr of the parsed body shows "**********".
    access_token: Annotated[SecretStr, Field(min_length=1, max_length=8192)] | None = None
    refresh_token: Annotated[SecretStr, Field(min_length=1, max_length=8192)] | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    local_collection: Collection | None = None
    session_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    policy: PolicyBody | None = None


class TransferItemBody(_Body):
    source: Path_
    destination: Path_
    recursive: bool = False


class TransferBody(_Body):
    source: Collection
    destination: Collection
    items: Annotated[list[TransferItemBody], Field(min_length=1, max_length=10_000)]
    label: Label | None = None
    sync_level: Literal["exists", "size", "mtime", "checksum"] | None = None
    # On unless turned off, as globus-cli does (its transfer option
    # --verify-checksum/--no-verify-checksum defaults to True: globus-cli,
    # src/globus_cli/parsing/shared_options/transfer_task_options.py); the Transfer API's
    # own default, when the field is left out, is not ours to rely on.
    verify_checksum: bool = True
    preserve_timestamp: bool = False
    deadline: Annotated[str, Field(max_length=64)] | None = None
    skip_source_errors: bool = False
    policy: PolicyBody | None = None
    submission_id: SubmissionId | None = None

    @field_validator("sync_level", mode="before")
    @classmethod
    def _sync_level_number(cls, value: object) -> object:
        # Globus also speaks sync levels as 0..3.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
            return _SYNC_NAMES[value]
        return value


class DeleteBody(_Body):
    collection: Collection
    paths: Annotated[list[Path_], Field(min_length=1, max_length=10_000)]
    recursive: bool = False
    label: Label | None = None
    policy: PolicyBody | None = None
    submission_id: SubmissionId | None = None


class WaitBody(_Body):
    timeout: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # Answer as soon as the task needs attention (erroring, paused, INACTIVE, stalled).
    stop_on_attention: bool = False


class MkdirBody(_Body):
    collection: Collection
    path: Path_


class RenameBody(_Body):
    collection: Collection
    oldpath: Path_
    newpath: Path_
