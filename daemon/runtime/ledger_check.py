"""Start-up checks of the ledger file, and the seq high-water mark kept beside it.

SQLite forgives too much for a ledger whose events were acknowledged to clients:

- a zero-length ``ledger.db`` opens as a new, empty database;
- WAL recovery stops at the first frame whose checksum is wrong and silently ignores every
  frame after it, committed transactions included (a flipped byte in the WAL dropped 11
  acknowledged events);
- a backup restored over the file makes the next seqs repeat ones clients already hold.

So before the ledger is opened: a missing or empty file is refused when the state folder
has held events before; the WAL is read frame by frame (the format of
https://www.sqlite.org/fileformat2.html#walformat) and refused when a committed frame of
the current WAL generation follows a frame that fails its checksum; the database passes
``PRAGMA quick_check``. Each refusal is a :class:`LedgerUnusable` (exit status 3, a
message saying what to do), never a traceback.

``ledger.seq`` in the state folder holds the highest seq the daemon ever committed. It is
outside the file an operator restores, so a restored (older) ledger continues above it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from pathlib import Path

from ...ledger.events import StoredEvent
from ..errors import LedgerUnusable

__all__ = ["SeqMark", "check_ledger", "check_wal"]

_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums little- / big-endian
_WAL_HEADER = 32
_FRAME_HEADER = 24


def _checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def check_wal(path: Path) -> int:
    """Raise LedgerUnusable when the WAL at ``path`` would lose committed transactions;
    returns the number of valid frames (0 without a WAL)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < _WAL_HEADER:
        return 0  # never written, or cut while being created: holds no commit
    magic, _version, page_size, _ckpt, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:32])
    if magic not in _WAL_MAGIC or page_size < 512 or page_size & (page_size - 1):
        raise LedgerUnusable(
            f"{path} is not a SQLite WAL file (its header is damaged); the transactions it "
            "holds cannot be read. Restore the ledger from a backup (docs/operations.md, "
            "section 6), or move this file away to start from the database file alone"
        )
    big = magic == 0x377F0683
    if _checksum(data[:24], 0, 0, big) != (c0, c1):
        # A header that does not match its checksum makes SQLite ignore the whole WAL.
        return 0 if not _has_commit(data, page_size, salt1, salt2, 0) else _damaged(path, 0)
    s0, s1 = c0, c1
    frame = _FRAME_HEADER + page_size
    valid = 0
    offset = _WAL_HEADER
    while offset + frame <= len(data):
        header = data[offset : offset + _FRAME_HEADER]
        _page, _commit, fsalt1, fsalt2, f0, f1 = struct.unpack(">6I", header)
        if (fsalt1, fsalt2) != (salt1, salt2):
            return valid  # a frame of an earlier generation: the log ends here
        s0, s1 = _checksum(header[:8], s0, s1, big)
        s0, s1 = _checksum(data[offset + _FRAME_HEADER : offset + frame], s0, s1, big)
        if (s0, s1) != (f0, f1):
            if _has_commit(data, page_size, salt1, salt2, offset + frame):
                _damaged(path, valid)
            return valid  # a torn write of the last transaction, never acknowledged
        valid += 1
        offset += frame
    return valid


def _has_commit(data: bytes, page_size: int, salt1: int, salt2: int, start: int) -> bool:
    """Is there a commit frame of this WAL generation at or after ``start``?"""
    frame = _FRAME_HEADER + page_size
    offset = start if start >= _WAL_HEADER else _WAL_HEADER
    offset = _WAL_HEADER + ((offset - _WAL_HEADER + frame - 1) // frame) * frame
    while offset + frame <= len(data):
        _page, commit, fsalt1, fsalt2 = struct.unpack(">4I", data[offset : offset + 16])
        if (fsalt1, fsalt2) == (salt1, salt2) and commit:
            return True
        offset += frame
    return False


def _damaged(path: Path, valid: int) -> int:
    raise LedgerUnusable(
        f"{path} is damaged: frame {valid + 1} fails its checksum and committed transactions "
        "follow it, which SQLite would silently drop. Restore the ledger from a backup "
        "(docs/operations.md, section 6); keep this file for inspection"
    )


def check_ledger(path: Path, *, high_water: int) -> int:
    """Refuse a ledger that would start empty over lost events, lose WAL commits, or fails
    SQLite's quick check. ``high_water``: the highest seq this state folder ever had.
    Returns the file's own high-water mark (0 for a new file)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if high_water > 0:
            raise LedgerUnusable(
                f"the ledger {path} is missing, but this state folder held events up to seq "
                f"{high_water}: starting an empty ledger would lose them. Restore it from a "
                f"backup, or, to start afresh on purpose, delete {path.name}-wal, "
                f"{path.name}-shm and {SeqMark.NAME}"
            ) from None
        return 0
    if size == 0:
        raise LedgerUnusable(
            f"the ledger {path} is empty (0 bytes): it was truncated or replaced. Restore it "
            "from a backup; to start afresh on purpose, delete it (and its -wal and -shm)"
        )
    check_wal(path.with_name(path.name + "-wal"))
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
            own = 0
            if (
                found == ["ok"]
                and conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
                ).fetchone()
            ):
                row = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
                ).fetchone()
                own = int(row[0]) if row is not None else 0
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise LedgerUnusable(
            f"the ledger {path} cannot be read as a SQLite database ({exc}): its header or "
            "pages are damaged. Restore it from a backup (docs/operations.md, section 6)"
        ) from None
    if found != ["ok"]:
        raise LedgerUnusable(
            f"the ledger {path} failed SQLite's quick check ({'; '.join(found[:3])}). "
            "Restore it from a backup (docs/operations.md, section 6)"
        )
    return own


class SeqMark:
    """The highest seq committed, in ``ledger.seq`` beside the ledger; a commit sink.

    Written after every committed batch (one small write, no fsync: it survives a crash
    of the daemon, and a clean stop fsyncs it); a restored ledger is opened with
    ``min_seq`` = this mark, so its next seqs never repeat one a client has seen.
    """

    NAME = "ledger.seq"

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / self.NAME
        self.value = self._read()
        self._fd: int | None = None

    def _read(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise LedgerUnusable(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            value = int(text or "0")
        except ValueError:
            raise LedgerUnusable(
                f"{self.path} must hold one integer (the highest seq committed); it holds "
                f"{text[:40]!r}. Write the ledger's head there, or delete it if this ledger "
                "was never restored"
            ) from None
        return max(0, value)

    def open(self, head: int) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.write(max(head, self.value), force=True)

    def offer(self, events: list[StoredEvent]) -> None:
        if events:
            self.write(events[-1].seq)

    def write(self, seq: int, *, force: bool = False) -> None:
        if self._fd is None or (seq <= self.value and not force):
            return
        self.value = max(seq, self.value)
        text = f"{self.value}\n".encode()
        # A fixed-width rewrite in place: never a moment when the file holds less.
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, text.rjust(21), 0)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
