"""Files of the state folder that only their user may read, replaced whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, on disk (fsync)
    before it replaces the old file: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    # The mode of os.open applies only to a file it creates, not to a .tmp a crash left.
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
