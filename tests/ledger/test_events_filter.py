"""events_since's SQL filters on commit time and data fields (used by the daemon's history)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ledger_builders import submit_pair

from radical.orbit.ledger import Ledger, StoredEvent, TaskStateChanged


async def test_events_since_filters_by_time_and_data_fields(tmp_path: Path) -> None:
    ledger = await Ledger.open(tmp_path / "l.db", page_size=3)  # filters hold across pages
    try:
        for n in range(6):
            await ledger.append_many(submit_pair(n, label="even" if n % 2 == 0 else "odd"))
        await asyncio.sleep(0.02)  # a later commit time for what follows
        for n in range(6):
            status = "FAILED" if n % 3 == 0 else "SUCCEEDED"
            await ledger.append(TaskStateChanged(task_id=f"task-{n}", status=status))
        everything = [e async for e in ledger.events_since(0)]

        async def seqs(**filters: Any) -> list[int]:
            return [e.seq async for e in ledger.events_since(0, **filters)]

        def expected(keep: Callable[[StoredEvent], bool]) -> list[int]:
            return [e.seq for e in everything if keep(e)]

        cut = everything[12].time  # the first state change
        assert await seqs(times=(cut, None)) == expected(lambda e: e.time >= cut)
        assert await seqs(times=(None, cut)) == expected(lambda e: e.time < cut)
        assert await seqs(times=(None, cut)) == list(range(1, 13))
        assert await seqs(data={"status": "FAILED"}) == expected(
            lambda e: e.data.get("status") == "FAILED"
        )
        assert len(await seqs(data={"status": "FAILED"})) == 2
        # Several fields and the other filters combine with AND.
        assert await seqs(data={"label": "even", "status": "ACTIVE"}, kinds=["task_submitted"]) == [
            2,
            6,
            10,
        ]
        assert await seqs(data={"label": "nothing"}) == []
        assert await seqs(times=(cut, None), data={"status": "ACTIVE"}) == []

        with pytest.raises(ValueError, match="not a field name"):
            await seqs(data={"status') OR 1=1 --": "x"})
    finally:
        await ledger.close()
