#!/usr/bin/env python3
"""Project tasks: one entry point for people and CI.

    python3 dev.py demo     # simulator + daemon + example transfer, end to end
    python3 dev.py check    # format check, lint, types, the whole test suite
    python3 dev.py test     # the test suite only (pytest arguments may follow)
    python3 dev.py bench    # every benchmark, printed as tables
    python3 dev.py campaigns [crash] [soak] [options]   # reliability campaigns (minutes)
    python3 dev.py fmt      # apply formatting and safe lint fixes

Each task creates or refreshes the virtualenv in .venv first (reinstalling only when
pyproject.toml changed), so a fresh machine needs nothing but Python 3.11+.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ORBIT_VENV", ROOT / ".venv"))
BIN = VENV / "bin"
PY = BIN / "python"


def ensure_venv() -> None:
    stamp = VENV / ".orbit-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"dev.py: creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("dev.py: installing orbit-globus[dev] (editable)", flush=True)
    run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    run([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]"])
    stamp.write_text(want)


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    if code != 0:
        sys.exit(code)


def tool(name: str) -> str:
    return str(BIN / name)


def task_demo(args: list[str]) -> None:
    run([str(PY), str(ROOT / "examples" / "demo.py"), *args])


def task_test(args: list[str]) -> None:
    env = dict(os.environ)
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    run([str(PY), "-m", "pytest", *args], env=env)


def task_check(args: list[str]) -> None:
    run([tool("ruff"), "format", "--check", "."])
    run([tool("ruff"), "check", "."])
    run([tool("mypy")])
    task_test(args)


def task_fmt(args: list[str]) -> None:
    run([tool("ruff"), "check", "--fix", "."])
    run([tool("ruff"), "format", "."])


def task_bench(args: list[str]) -> None:
    run([str(PY), str(ROOT / "benchmarks" / "run.py"), *args])


def task_campaigns(args: list[str]) -> None:
    """Run the named campaigns in benchmarks/campaigns/ (all without names); the options
    that follow the names go to each, e.g. `campaigns crash --rounds 20`."""
    folder = ROOT / "benchmarks" / "campaigns"
    known = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith(("campaign_", "_")))
    names = []
    while args and args[0] in known:
        names.append(args.pop(0))
    if args and not args[0].startswith("-"):
        print(f"dev.py: unknown campaign {args[0]!r}; choose from {known}", file=sys.stderr)
        sys.exit(2)
    for name in names or known:
        run([str(PY), str(folder / f"{name}.py"), *args])


TASKS = {
    "demo": task_demo,
    "check": task_check,
    "test": task_test,
    "fmt": task_fmt,
    "bench": task_bench,
    "campaigns": task_campaigns,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        sys.exit(2)
    ensure_venv()
    TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
