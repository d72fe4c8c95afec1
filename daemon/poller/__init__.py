"""The poller: Globus task state -> ledger events, one bulk sweep per session and interval.

``loop`` is the asyncio shell that performs each sweep; the decisions are pure functions with
no I/O and no clock: ``plan`` (which tasks a sweep asks, in which batches, which get a
catch-up or their trouble details, how a refused filter re-batches, what an outcome means for
the next sweep), ``diff`` (ledger rows + Globus task documents -> events), ``catchup`` (a
task's Globus event list -> the transitions missed during a gap) and ``trouble`` (a task's
``needs_attention`` episodes, its newest error, its policy's cancel).
"""
