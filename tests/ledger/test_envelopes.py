"""The envelopes SQLite builds for a replay equal the protocol's own, event for event."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_builders import submit_pair, transfer_request

from radical.orbit.ledger import (
    CancelRequested,
    CancelResult,
    CredentialExpired,
    DeleteRequest,
    DeleteSubmitted,
    Event,
    FatalError,
    Ledger,
    SessionClosed,
    SessionOpened,
    SubmitFailed,
    SubmitRequested,
    TaskProgress,
    TaskStateChanged,
)
from radical.orbit.protocol import build_envelope, kinds_of

TEXT = st.text(max_size=12)  # any unicode: quotes, backslashes, controls, non-ASCII
COUNT = st.integers(min_value=0, max_value=2**53)


@st.composite
def histories(draw: st.DrawFn) -> list[list[Event]]:
    """Appends (each a list of events) valid against the fold: submits, then anything on
    the submitted tasks."""
    label = draw(st.one_of(st.none(), TEXT))
    out: list[list[Event]] = [
        [SessionOpened(owner="o", session_id=draw(TEXT), auth="refresh_token")],
        list(submit_pair(1, label=label)),
        [
            SubmitRequested(
                owner="o",
                session_id="s1",
                submission_id="sub-d",
                type="DELETE",
                request=DeleteRequest(collection="c", paths=(draw(TEXT),), label=label),
            ),
            DeleteSubmitted(owner="o", session_id="s1", submission_id="sub-d", task_id="task-d"),
        ],
        [
            SubmitRequested(
                owner="o",
                session_id="s1",
                submission_id="sub-f",
                type="TRANSFER",
                request=transfer_request(label),
            ),
            SubmitFailed(owner="o", session_id="s1", submission_id="sub-f", code="X"),
        ],
    ]
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            out.append(
                [
                    TaskProgress(
                        task_id="task-1",
                        nice_status=draw(st.one_of(st.none(), TEXT)),
                        label=draw(st.one_of(st.none(), TEXT)),
                        bytes_transferred=draw(COUNT),
                        files_transferred=draw(COUNT),
                    )
                ]
            )
        elif choice == 1:
            out.append(
                [CancelRequested(task_id="task-1"), CancelResult(task_id="task-1", code=draw(TEXT))]
            )
        elif choice == 2:
            out.append([CredentialExpired(owner="o", session_id="s1", message=draw(TEXT))])
        elif choice == 3:
            out.append([SessionClosed(owner="o", session_id="s1")])
        else:
            out.append(
                [
                    TaskStateChanged(
                        task_id="task-d",
                        status="INACTIVE",
                        fatal_error=draw(st.one_of(st.none(), st.builds(FatalError, code=TEXT))),
                    )
                ]
            )
    out.append([TaskStateChanged(task_id="task-1", status="SUCCEEDED", bytes_transferred=7)])
    return out


async def _compare(history: list[list[Event]], topics: list[str] | None) -> int:
    folder = Path(tempfile.mkdtemp(prefix="envelopes-"))
    try:
        async with await Ledger.open(folder / "l.db", page_size=4) as ledger:
            for events in history:
                await ledger.append_many(events)
            kinds = kinds_of(topics)
            stored = [e async for e in ledger.events_since(0, kinds=kinds)]
            pages = [page async for page in ledger.envelope_pages(0, kinds=kinds)]
        sent = [(seq, json.loads(text)) for page in pages for seq, text in page]
        want = [
            (
                e.seq,
                build_envelope(
                    seq=e.seq,
                    time=e.time,
                    kind=e.kind,
                    session_id=e.session_id,
                    task_id=e.task_id,
                    data=e.data,
                ),
            )
            for e in stored
        ]
        # The same objects, through JSON as a client reads them (times as the same floats).
        assert sent == [(seq, json.loads(json.dumps(envelope))) for seq, envelope in want]
        assert all(len(page) <= 4 for page in pages)
        return len(sent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=40, deadline=None)
@given(
    history=histories(),
    topics=st.one_of(
        st.none(), st.lists(st.sampled_from(["transfer_status", "session", "task"]), min_size=1)
    ),
)
def test_sql_envelopes_equal_the_protocol(
    history: list[list[Event]], topics: list[str] | None
) -> None:
    count = asyncio.run(_compare(history, topics))
    assert count > 0 or topics is not None
