"""Run a command under the seccomp half of a unit's sandbox, without systemd as PID 1.

    python unit_sandbox.py UNIT_FILE -- COMMAND ARGS...

Reads the unit's SystemCallFilter=, SystemCallErrorNumber=, MemoryDenyWriteExecute= and
RestrictAddressFamilies= and builds the filters the way systemd 252 does: an allow list
(group names expanded by ``systemd-analyze syscall-filter``, @default always in, ``~``
lines subtracted; anything else fails with the error number), and a second filter that
refuses writable+executable mappings and socket families outside the list (loaded
first: the allow list may forbid loading more filters). Sets
no_new_privs, loads both through libseccomp (ctypes, no Python binding needed) and execs
the command, which keeps the filters for life.

Mount namespaces, DynamicUser= and the other non-seccomp options are not reproduced here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["allowed_syscalls", "apply", "unit_settings"]

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_LT, SCMP_CMP_EQ, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = 2, 4, 6, 7
PR_SET_NO_NEW_PRIVS = 38
SHM_EXEC = 0o100000


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """[Service] key -> values in order (keys repeat in unit files)."""
    settings: dict[str, list[str]] = {}
    in_service = False
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_service = line == "[Service]"
        elif in_service and line and line[0] not in "#;" and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _groups() -> dict[str, list[str]]:
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith(" ") and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def _expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    names: set[str] = set()
    for item in items:
        if item.startswith("@"):
            names |= _expand(groups[item], groups)
        else:
            names.add(item)
    return names


def allowed_syscalls(filters: list[str]) -> set[str]:
    """The allow list systemd builds from SystemCallFilter= lines (first one not negated)."""
    groups = _groups()
    assert filters and not filters[0].startswith("~"), "only allow lists are reproduced"
    allowed = _expand(["@default"], groups)
    for line in filters:
        negated = line.startswith("~")
        names = _expand(line.lstrip("~").split(), groups)
        allowed = allowed - names if negated else allowed | names
    return allowed


def _family_numbers(names: list[str]) -> list[int]:
    return sorted(int(getattr(socket, name)) for name in names)


def apply(unit: Path) -> None:
    settings = unit_settings(unit)
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def nr(name: str) -> int:
        return int(lib.seccomp_syscall_resolve_name(name.encode()))

    def rule(ctx: int, action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        number = nr(name)
        if number < 0:  # a call of another architecture (arm_fadvise64_64, ...)
            return
        array = (_ArgCmp * max(1, len(cmps)))(*(_ArgCmp(*c) for c in cmps))
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
        if rc < 0:
            raise OSError(-rc, f"seccomp_rule_add {name}: {os.strerror(-rc)}")

    def load(ctx: int) -> None:
        rc = lib.seccomp_load(ctx)
        lib.seccomp_release(ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")

    extra = lib.seccomp_init(SCMP_ACT_ALLOW)
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        wx = mmap.PROT_WRITE | mmap.PROT_EXEC
        rule(extra, scmp_act_errno(errno.EPERM), "mmap", (2, SCMP_CMP_MASKED_EQ, wx, wx))
        for name in ("mprotect", "pkey_mprotect"):
            cmp = (2, SCMP_CMP_MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC)
            rule(extra, scmp_act_errno(errno.EPERM), name, cmp)
        rule(
            extra, scmp_act_errno(errno.EPERM), "shmat", (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)
        )
    if "RestrictAddressFamilies" in settings:
        families = _family_numbers(settings["RestrictAddressFamilies"][-1].split())
        refuse = scmp_act_errno(errno.EAFNOSUPPORT)
        # As systemd does: below the lowest, above the highest, and every gap between.
        rule(extra, refuse, "socket", (0, SCMP_CMP_LT, families[0], 0))
        rule(extra, refuse, "socket", (0, SCMP_CMP_GT, families[-1], 0))
        for value in range(families[0] + 1, families[-1]):
            if value not in families:
                rule(extra, refuse, "socket", (0, SCMP_CMP_EQ, value, 0))
    load(extra)

    # Last, as systemd does: the allow list may not include seccomp(2) itself.
    code = getattr(errno, settings.get("SystemCallErrorNumber", ["EPERM"])[-1])
    allow_list = lib.seccomp_init(scmp_act_errno(code))
    for name in sorted(allowed_syscalls(settings["SystemCallFilter"])):
        rule(allow_list, SCMP_ACT_ALLOW, name)
    load(allow_list)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: unit_sandbox.py UNIT_FILE -- COMMAND ARGS...")
    apply(Path(argv[1]))
    os.execvp(argv[3], argv[3:])  # noqa: S606 - exec is the point: the filters carry over


if __name__ == "__main__":
    main(sys.argv)
