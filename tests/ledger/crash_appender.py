"""Child process of test_crash.py: appends without end and prints every acknowledged seq.

    python crash_appender.py LEDGER_PATH PREFIX

A line ``<seq> <kind> <key>`` is printed (and flushed) only after the append returned, i.e.
after its commit was durable; the parent kills this process with SIGKILL at a random moment
and checks that every printed event survived.
"""

from __future__ import annotations

import asyncio
import sys

from radical.orbit.ledger import Ledger, SubmitRequested, TaskProgress, TaskSubmitted
from radical.orbit.ledger.events import TransferItem, TransferRequest

REQUEST = TransferRequest(
    source="src", destination="dst", items=(TransferItem(source="/a", destination="/b"),)
)


def _ack(seq: int, kind: str, key: str) -> None:
    sys.stdout.write(f"{seq} {kind} {key}\n")
    sys.stdout.flush()


async def worker(ledger: Ledger, prefix: str, worker_id: int) -> None:
    n = 0
    while True:
        n += 1
        name = f"{prefix}-{worker_id}-{n}"
        stored = await ledger.append_many(
            [
                SubmitRequested(
                    session_id="s1", submission_id=name, type="TRANSFER", request=REQUEST
                ),
                TaskSubmitted(session_id="s1", submission_id=name, task_id=name),
            ]
        )
        for event in stored:
            _ack(event.seq, event.kind, name)
        for i in range(3):
            progress = await ledger.append(TaskProgress(task_id=name, bytes_transferred=i))
            _ack(progress.seq, progress.kind, name)


async def main() -> None:
    ledger = await Ledger.open(sys.argv[1])
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(worker(ledger, sys.argv[2], w) for w in range(20)))


if __name__ == "__main__":
    asyncio.run(main())
