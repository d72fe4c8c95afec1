"""Oversized work, bounded for CI; the full campaign is ``python3 dev.py campaigns hostile``.

One token holder submits large transfers to a collection that does not exist, reads its
whole history four pages at a time and replays it over a WebSocket. Before the byte
budget, the single copy of each request and the byte-bounded pages, 20 such submits of
3.9 MB were stored twice (156 MB) and one history page decoded all of them at once (the
daemon went past 1 GB). Latency is the full campaign's figure, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import HostileConfig, run_hostile

from timing import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180 * UNIT)]


def test_oversized_submits_and_reads_stay_within_memory(tmp_path: Path) -> None:
    config = HostileConfig(submits=20, parallel=4)
    result = run_hostile(config, root=tmp_path)
    print(result.table())
    assert result.answers == {"413": 20, "404": 20}
    assert result.stored_requests == 20
    # Each request once: its paths (under the budget) plus a little JSON around them.
    assert result.request_bytes_stored < 20 * result.budget * 1.05
    assert result.history_largest_page_mb < 8
    assert result.ws_events >= 40
    assert result.rss_peak < config.max_rss_mb
    assert result.other and result.other_errors == []
