"""Connection flood, bounded for CI; the full campaign is ``python3 dev.py campaigns flood``.

2,000 half-open connections (a request line and one header, never the blank line) against
a daemon limited to 1,024 descriptors, as on a host whose unit sets no ``LimitNOFILE``.
Before the header timeout and the connection caps, the flood took every descriptor: fresh
connections were refused, asyncio logged every failed accept, and nothing ever closed the
half-open sockets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flood import FloodConfig, run_flood

from radical.orbit.daemon.api.connections import ConnectionGuard
from timing import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 * UNIT)]


def test_a_flood_of_half_open_connections_leaves_clients_served(tmp_path: Path) -> None:
    config = FloodConfig(connections=2000, seconds=6, header_timeout=1.5, nofile=1024)
    result = run_flood(config, root=tmp_path)
    print(result.table())
    assert result.peak_open >= 1000, "the flood never got going"
    assert result.closed_by_daemon > 0, "no half-open connection was ever closed"
    assert result.keepalive and result.keepalive_errors == []
    assert result.fresh and result.fresh_errors == []
    assert result.fds_peak < result.daemon_nofile
    assert result.log_growth < 1 << 20
    assert result.fds_after <= result.fds_before + 32


def test_the_guard_pushes_out_the_oldest_untrusted_connection_only() -> None:
    guard = ConnectionGuard(max_connections=4, max_untrusted=2)
    assert guard.admit("a") == []
    guard.trust("a")
    assert guard.admit("b") == []
    assert guard.admit("c") == []
    assert guard.admit("d") == ["b"]  # two untrusted at most: the oldest goes
    guard.trust("c")
    assert guard.admit("e") == []  # 4 open: a, c trusted; d, e untrusted
    assert guard.admit("f") == ["d"]  # full: an untrusted one makes room, never a trusted one
    guard.trust("e")
    guard.trust("f")
    assert guard.admit("g") == ["g"]  # every slot trusted: the newcomer is refused
    assert (guard.evicted, guard.refused, len(guard)) == (2, 1, 4)
    guard.release("a")
    assert guard.admit("h") == []


def test_the_connection_budget_fits_the_descriptor_limit() -> None:
    from radical.orbit.daemon.runtime.resources import RESERVED_FDS, connection_budget

    assert connection_budget(wanted=16384, nofile=65536) == 16384
    assert connection_budget(wanted=16384, nofile=1024) == 1024 - RESERVED_FDS
    assert connection_budget(wanted=16384, nofile=100) == 16
