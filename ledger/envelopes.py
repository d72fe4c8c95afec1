"""The notification envelope of each event, built by SQLite as JSON text (for replay).

:func:`radical.orbit.protocol.build_envelope` is the definition: this module writes the same
object as one SQL expression, generated from the protocol's own constants (each kind's topic,
the fields of a ``transfer_status`` notification and its counters), so that a replay page
comes out of the reader thread as ready-to-send text. Decoding each event's JSON into Python
objects and encoding the envelope again cost the daemon about three quarters of the CPU of a
replayed event; SQLite does the same work in the reader thread, outside the GIL.
``tests/ledger/test_envelopes.py`` checks that both give the same objects.

Times: ``printf('%!.17g')`` writes 17 significant digits, enough to read back the same float
(Python writes the shortest such repr, so the texts may differ, the numbers do not).
"""

from __future__ import annotations

from ..protocol import (
    EVENT_TEXT_PREFIX,
    TRANSFER_STATUS_COUNTERS,
    TRANSFER_STATUS_FIELDS,
    TRANSFER_STATUS_FLAGS,
    EventKind,
    Topic,
    topic_of,
)

__all__ = ["ENVELOPE_SQL"]


def _quote(text: str) -> str:
    """A SQL string literal (our own constants: identifiers and topic names)."""
    return "'" + text.replace("'", "''") + "'"


def _transfer_status_data() -> str:
    # Concatenated JSON text, not json_object(): ``data -> '$.x'`` is the field's own JSON
    # text (a string quoted, true/false, an object whole), which json_object() would write
    # as 1/0 or as a quoted string depending on SQLite's version. A field absent or null is
    # NULL after nullif(), then null, or 0 for a counter, false for a flag.
    parts: list[str] = []
    for index, name in enumerate(TRANSFER_STATUS_FIELDS):
        default = (
            "'0'"
            if name in TRANSFER_STATUS_COUNTERS
            else "'false'"
            if name in TRANSFER_STATUS_FLAGS
            else "'null'"
        )
        key = ("{" if index == 0 else ",") + f'"{name}":'
        parts.append(f"{_quote(key)} || coalesce(nullif(data -> '$.{name}', 'null'), {default})")
    return "(" + " || ".join(parts) + " || '}')"


def _build() -> str:
    topics = {kind: topic_of(kind) for kind in EventKind}
    transfer = [k for k, t in topics.items() if t is Topic.TRANSFER_STATUS]
    cases = " ".join(f"WHEN {_quote(k)} THEN {_quote(t)}" for k, t in topics.items())
    kinds = ", ".join(_quote(k) for k in transfer)
    return (
        f"{_quote(EVENT_TEXT_PREFIX)} || seq"
        " || ',\"time\":' || printf('%!.17g', time)"
        f" || ',\"topic\":' || json_quote(CASE kind {cases} ELSE {_quote(Topic.TASK)} END)"
        " || ',\"kind\":' || json_quote(kind)"
        " || ',\"session_id\":' || json_quote(session_id)"
        " || ',\"task_id\":' || json_quote(task_id)"
        f" || ',\"data\":' || CASE WHEN kind IN ({kinds}) THEN {_transfer_status_data()}"
        " ELSE data END || '}'"
    )


# The envelope's JSON text, as a column expression over one row of ``events``.
ENVELOPE_SQL = _build()
