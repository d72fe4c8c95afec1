"""SQL migrations of the ledger, applied in order of their number.

Files are named ``NNNN_what.sql``; ``NNNN`` is the schema version the file brings the database
to. Numbers start at 1 and have no gaps. The ledger applies the missing ones at open, all in
one transaction (see ``radical.orbit.ledger.schema``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["Migration", "load_migrations"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(folder: Path | None = None) -> tuple[Migration, ...]:
    """The migrations shipped with the package (or found in ``folder``), by version."""
    found: list[Migration] = []
    if folder is None:
        entries = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in resources.files(__name__).iterdir()
            if entry.name.endswith(".sql")
        ]
    else:
        entries = [(p.name, p.read_text(encoding="utf-8")) for p in folder.glob("*.sql")]
    for name, sql in entries:
        match = _NAME.match(name)
        if match is None:
            raise ValueError(f"migration file {name} must be named NNNN_lowercase_words.sql")
        found.append(Migration(int(match.group(1)), name, sql))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.name}: expected version {expected}; "
                "numbers start at 0001 and have no gaps or duplicates"
            )
    return tuple(found)
