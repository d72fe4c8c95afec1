"""Event builders shared by the ledger tests."""

from __future__ import annotations

from radical.orbit.ledger import SubmitRequested, TaskSubmitted, TransferItem, TransferRequest


def transfer_request(label: str | None = None) -> TransferRequest:
    return TransferRequest(
        source="src-collection",
        destination="dst-collection",
        items=(TransferItem(source="/data/in", destination="/data/out", recursive=True),),
        label=label,
        sync_level="checksum",
    )


def submit_pair(
    n: int, *, session_id: str = "s1", owner: str = "alice", label: str | None = None
) -> tuple[SubmitRequested, TaskSubmitted]:
    """The two events of a successful submit of task ``task-<n>``."""
    return (
        SubmitRequested(
            owner=owner,
            session_id=session_id,
            submission_id=f"sub-{n}",
            type="TRANSFER",
            request=transfer_request(label),
        ),
        TaskSubmitted(
            owner=owner,
            session_id=session_id,
            submission_id=f"sub-{n}",
            task_id=f"task-{n}",
            label=label,
            source="src-collection",
            destination="dst-collection",
            status="ACTIVE",
        ),
    )
