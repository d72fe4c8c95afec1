"""Large requests are stored once and read a bounded page at a time; a malformed row is
skipped; a restored file continues above a given seq."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from radical.orbit.ledger import Ledger, SubmitRequested, TransferItem, TransferRequest


def _request(n: int, size: int) -> TransferRequest:
    path = "/" + "p" * size
    return TransferRequest(
        source="a", destination="b", items=(TransferItem(source=path, destination=path),)
    )


async def test_a_request_is_stored_once_and_pages_are_bounded_in_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with await Ledger.open(path, page_size=1000) as ledger:
        for n in range(6):
            await ledger.append(
                SubmitRequested(
                    session_id="s",
                    submission_id=f"sub-{n}",
                    type="TRANSFER",
                    request=_request(n, 1_000_000),
                )
            )
        pending = await ledger.pending_submissions()
        assert [p.request for p in pending] == [_request(n, 1_000_000) for n in range(6)]
        ledger._page_bytes = 2_500_000  # three 2 MB events per page at most: 2 pages + rest
        seen = [e.seq async for e in ledger.events_since(0)]
        assert seen == list(range(1, 7))
        raw = [r async for r in ledger.raw_events_since(0)]
        assert [r[0] for r in raw] == seen and all(r[6].startswith("{") for r in raw)
        # Batched replay pages end at the same byte bound: two 2 MB events each.
        pages = [page async for page in ledger.envelope_pages(0)]
        assert [[seq for seq, _ in page] for page in pages] == [[1, 2], [3, 4], [5, 6]]
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(submissions)")]
    stored = db.execute("SELECT sum(length(data)) FROM events").fetchone()[0]
    db.close()
    assert "request" not in columns
    assert 6 * 2_000_000 < stored < 6 * 2_000_000 * 1.01  # each request once


async def test_a_malformed_row_is_skipped_and_min_seq_holds(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with await Ledger.open(path) as ledger:
        await ledger.append(
            SubmitRequested(
                session_id="s", submission_id="a", type="TRANSFER", request=_request(0, 5)
            )
        )
    db = sqlite3.connect(path)
    # Text that is not JSON at all is refused by the history indexes on json_extract(data)
    # (migration 0006); JSON that is not an object still gets in by a hand edit.
    db.execute(
        "INSERT INTO events (time, kind, owner, session_id, task_id, data) "
        "VALUES (0, 'task_progress', NULL, 's', NULL, '\"not an object\"')"
    )
    db.commit()
    db.close()
    async with await Ledger.open(path, min_seq=100) as ledger:
        assert await ledger.head() == 100
        stored = await ledger.append(
            SubmitRequested(
                session_id="s", submission_id="b", type="TRANSFER", request=_request(1, 5)
            )
        )
        assert stored.seq == 101
        assert [e.seq async for e in ledger.events_since(0)] == [1, 101]
        assert [r[0] async for r in ledger.raw_events_since(0)] == [1, 101]
        pages = [page async for page in ledger.envelope_pages(0)]
        assert [seq for page in pages for seq, _ in page] == [1, 101]
