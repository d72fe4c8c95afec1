"""The daemon's defences against heap growth by fragmentation (daemon/runtime/memory.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import platform
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest
from daemon_helpers import start_daemon

from radical.orbit.daemon.runtime.memory import collect_cycles
from radical.orbit.simulator import Simulator
from timing import UNIT

# Eight threads allocate at the same time (blocks above 512 bytes bypass Python's own
# allocator and reach malloc), then glibc reports its arenas ("heaps") in malloc_info.
_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from radical.orbit.daemon.runtime.memory import limit_malloc_arenas

    if sys.argv[1] == "capped":
        assert limit_malloc_arenas(2)
    barrier = threading.Barrier(9)
    kept = []

    def work():
        kept.append([bytearray(4096) for _ in range(64)])
        barrier.wait()
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    barrier.wait()
    libc = ctypes.CDLL(None)
    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = (ctypes.c_int, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    with tempfile.NamedTemporaryFile("r") as out:
        fp = libc.fdopen(out.fileno(), b"w")
        libc.malloc_info(0, fp)
        libc.fflush(ctypes.c_void_p(fp))
        print(open(out.name).read().count("<heap nr="))
    barrier.wait()
    """
)


def _arenas_used(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, timeout=60 * UNIT
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_malloc_arenas_are_capped() -> None:
    assert _arenas_used("default") > 2  # the control: one arena per thread, or so
    assert _arenas_used("capped") <= 2


def test_the_daemon_freezes_its_startup_objects(tmp_path: Path, sim: Simulator) -> None:
    daemon = start_daemon(tmp_path, sim, env={"RADICAL_ORBIT_LOG_LEVEL": "info"})
    daemon.stop()  # the log is complete once the process has exited
    text = daemon.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    listening = [line for line in lines if line.get("event") == "listening"]
    assert len(listening) == 1, lines
    # Modules, routes and models: tens of thousands of objects the collector need not scan.
    assert listening[0]["frozen_objects"] > 10_000


class _Node:
    partner: _Node | None = None


async def test_cycles_are_collected_on_a_clock() -> None:
    gc.disable()  # only collect_cycles may collect during the test
    task: asyncio.Task[None] | None = None
    try:
        node = _Node()
        node.partner = node
        alive = weakref.ref(node)
        del node
        await asyncio.sleep(0.05)
        assert alive() is not None  # reference counting alone cannot free a cycle
        task = asyncio.create_task(collect_cycles(every=0.05))
        for _ in range(100):
            if alive() is None:
                break
            await asyncio.sleep(0.05)
        assert alive() is None
    finally:
        gc.enable()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
