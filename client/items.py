"""What the command line's transfer and delete arguments mean, without I/O.

``SRC:PATH`` splits a collection from a path the way globus-cli's ``ENDPOINT_ID[:PATH]``
arguments do; ``--batch`` lines follow globus-cli's batch format (globus-cli, ``globus
transfer --batch``: one ``SOURCE_PATH DEST_PATH`` per line, shell quoting, ``#`` comments,
an optional ``--recursive``), and for a delete one ``PATH`` per line.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

__all__ = ["BatchError", "delete_paths", "split_collection_path", "transfer_items"]


class BatchError(ValueError):
    """A batch line that cannot be read; the message names the line."""


def split_collection_path(argument: str) -> tuple[str, str | None]:
    """``"UUID:/path"`` -> ``("UUID", "/path")``; ``"UUID"`` -> ``("UUID", None)``.

    A collection id (a UUID or ``local``) holds no colon, so the first one separates.
    """
    collection, sep, path = argument.partition(":")
    return collection, (path if sep else None)


def _lines(lines: Iterable[str]) -> Iterable[tuple[int, list[str]]]:
    for number, line in enumerate(lines, start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise BatchError(f"batch line {number}: {exc}") from None
        if words:
            yield number, words


def transfer_items(lines: Iterable[str], *, recursive: bool) -> list[dict[str, Any]]:
    """Transfer items from batch lines ``SOURCE_PATH DEST_PATH [--recursive|-r]``."""
    items: list[dict[str, Any]] = []
    for number, words in _lines(lines):
        flags = [w for w in words if w.startswith("-")]
        paths = [w for w in words if not w.startswith("-")]
        unknown = [f for f in flags if f not in ("-r", "--recursive")]
        if unknown or len(paths) != 2:
            raise BatchError(
                f"batch line {number}: expected 'SOURCE_PATH DEST_PATH [--recursive]', got"
                f" {' '.join(words)!r}"
            )
        items.append(
            {"source": paths[0], "destination": paths[1], "recursive": recursive or bool(flags)}
        )
    return items


def delete_paths(lines: Iterable[str]) -> list[str]:
    """Paths from batch lines of one ``PATH`` each."""
    paths: list[str] = []
    for number, words in _lines(lines):
        if len(words) != 1:
            raise BatchError(f"batch line {number}: expected one PATH, got {' '.join(words)!r}")
        paths.append(words[0])
    return paths
