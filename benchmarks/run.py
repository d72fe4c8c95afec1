"""Run every benchmark in this folder and print its table.

    python3 dev.py bench                 # all of them
    python3 dev.py bench ledger poller   # only bench_ledger.py and bench_poller.py

Each benchmark runs in its own process (so one's memory does not skew another's) and
prints its own table; this runner first prints the machine the figures come from.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str]) -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    chosen = [n for n in names if not argv or n in argv]
    unknown = [a for a in argv if a not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {names}", file=sys.stderr)
        return 2
    print(f"machine: {machine()}\n", flush=True)
    failed = 0
    for name in chosen:
        print(f"== {name} ==", flush=True)
        code = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")])
        failed += code != 0
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
