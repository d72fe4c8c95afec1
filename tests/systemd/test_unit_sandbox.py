"""unit_sandbox.py really enforces the unit's seccomp settings (else 'sandboxed' proves nothing)."""

from __future__ import annotations

import ctypes.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from unit_sandbox import allowed_syscalls, unit_settings

from timing import UNIT

HERE = Path(__file__).resolve().parent
UNITS = HERE.parents[1] / "systemd"
SYSTEM_UNIT = UNITS / "orbit-globus-endpoint.service"
USER_UNIT = UNITS / "user" / "orbit-globus-endpoint.service"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not ctypes.util.find_library("seccomp"),
    reason="needs systemd-analyze and libseccomp",
)

_PROBE = textwrap.dedent(
    """
    import errno, mmap, os, socket, sqlite3, sys, threading
    def outcome(call):
        try:
            call()
        except OSError as exc:
            return errno.errorcode[exc.errno]
        return "ok"
    wx = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
    print(outcome(lambda: mmap.mmap(-1, 4096, prot=wx)))
    print(outcome(lambda: mmap.mmap(-1, 4096)))
    print(outcome(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)))
    print(outcome(lambda: socket.socket(socket.AF_INET6).close()))
    print(outcome(lambda: os.chown(sys.argv[1], os.getuid(), os.getgid())))
    print(outcome(lambda: socket.sethostname("sandbox")))
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    db = sqlite3.connect(sys.argv[1])
    db.execute("pragma journal_mode=wal")
    db.execute("create table t(x)")
    db.commit()
    import ssl, uvicorn, fastapi, globus_sdk, aiosqlite, websockets, httpx  # the daemon's stack
    print("stack ok")
    """
)


def test_filters_are_enforced(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, str(HERE / "unit_sandbox.py"), str(SYSTEM_UNIT), "--"),
            *(sys.executable, "-c", _PROBE, str(tmp_path / "probe.db")),
        ],
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "EPERM",  # MemoryDenyWriteExecute=
        "ok",
        "EAFNOSUPPORT",  # RestrictAddressFamilies=
        "ok",
        "EPERM",  # ~@privileged (@chown), even for root
        "EPERM",  # ~@privileged (sethostname)
        "stack",
        "ok",
    ]


def test_allow_list_follows_systemd_groups() -> None:
    allowed = allowed_syscalls(unit_settings(SYSTEM_UNIT)["SystemCallFilter"])
    assert {"epoll_wait", "sendmsg", "clone3", "fsync", "execve"} <= allowed
    assert not {"setuid", "chown", "mount", "setpriority", "reboot", "ptrace"} & allowed


def test_user_unit_has_the_same_seccomp_settings() -> None:
    keys = (
        "SystemCallFilter",
        "SystemCallErrorNumber",
        "SystemCallArchitectures",
        "MemoryDenyWriteExecute",
        "RestrictAddressFamilies",
        "NoNewPrivileges",
    )
    system, user = unit_settings(SYSTEM_UNIT), unit_settings(USER_UNIT)
    assert {k: system[k] for k in keys} == {k: user[k] for k in keys}
