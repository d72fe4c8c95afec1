"""Pure decisions of the relay: owner names, request timeouts, stream cursors.

Kept apart from the ASGI shell (:mod:`.app`) so they can be tested without sockets.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from ..protocol import EVENT_TEXT_PREFIX

__all__ = [
    "WAIT_GRACE",
    "StreamCursor",
    "relay_timeout",
]

# The wait route holds a request open up to the timeout in its body; the relay waits this
# much longer so an answer that comes at the last moment still gets through.
WAIT_GRACE = 10.0
# Largest wait the relay honours (the daemon's own WaitBody bounds it too).
_MAX_WAIT = 24 * 3600.0


def relay_timeout(path: str, body: bytes, *, default: float) -> float:
    """How long the bridge waits for the endpoint's answer to ``path``.

    A task wait asks the daemon to hold the request for ``timeout`` seconds (60 when not
    given): the relay outlasts that. Only the one number is read from the body.
    """
    if not path.endswith("/wait"):
        return default
    wait = 60.0
    if body:
        try:
            document = json.loads(body)
        except ValueError:
            return default
        value = document.get("timeout") if isinstance(document, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            wait = min(float(value), _MAX_WAIT)
    return max(default, wait + WAIT_GRACE)


_EVENT_PREFIX = EVENT_TEXT_PREFIX


class StreamCursor:
    """The last seq a bridge client received on one stream, for a 4008 ``resume from``.

    Starts at the ``since`` it asked for; a client that asked "from now" gets its position
    from the first heartbeat's ``head``, as the daemon's own stream does.
    """

    def __init__(self, query: str) -> None:
        self.last: int | None = None
        values = parse_qs(query).get("since")
        if values and values[0].isdigit():
            self.last = int(values[0])

    def sent(self, text: str) -> None:
        # Fast path: the daemon writes events as {"type":"event","seq":N,...}; reading N
        # without a JSON parse matters when one event fans out to hundreds of streams.
        if text.startswith(_EVENT_PREFIX):
            end = text.find(",", len(_EVENT_PREFIX))
            digits = text[len(_EVENT_PREFIX) : end]
            if end > 0 and digits.isdigit():
                self.last = int(digits)
                return
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        seq = message.get("seq") if message.get("type") == "event" else None
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.last = seq
        elif self.last is None and message.get("type") == "heartbeat":
            head = message.get("head")
            if isinstance(head, int) and not isinstance(head, bool):
                self.last = head
