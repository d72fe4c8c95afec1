"""Fixtures of the ledger tests: a fresh ledger file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radical.orbit.ledger import Ledger


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(tmp_path / "ledger.db")
    try:
        yield opened
    finally:
        await opened.close()
