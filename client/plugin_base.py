"""What the blocking and the asyncio ``globus`` clients share, without I/O.

The constructor (daemon address, transport, the session a client is bound to), the credential
it remembers for a daemon that restarted, :meth:`~GlobusPluginBase.events`, and every decision
of the retry loops: whether and how long to wait before repeating a submit
(:func:`submit_retry_wait`) or a request of a waiting call (:func:`patience_wait`), what a
polling wait asks next. The two subclasses add only the sending and the sleeping, awaited or
not (:mod:`.globus`, :mod:`.aio`).
"""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from . import calls
from .config import DaemonAddress, resolve_address
from .errors import OrbitError, RequestError, SubmitUnresolved
from .stream_base import EventStreamBase
from .transport import DEFAULT_SUBMIT_TIMEOUT, DEFAULT_TIMEOUT, AsyncTransport, SyncTransport

__all__ = ["GlobusPluginBase", "patience_wait", "submit_retry_wait"]


Stream = TypeVar("Stream", bound=EventStreamBase[Any])


class GlobusPluginBase(Generic[Stream]):
    """The constructor of both clients (see :class:`~.globus.GlobusClient`); a subclass
    names its transport, blocking or asyncio."""

    _transport: SyncTransport | AsyncTransport
    _transport_type: type[SyncTransport] | type[AsyncTransport]
    _stream_type: type[Stream]

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        session_id: str | None = None,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        address: DaemonAddress | None = None,
        remember_credential: bool = True,
        submit_timeout: float = DEFAULT_SUBMIT_TIMEOUT,
    ) -> None:
        self.address = address or resolve_address(url=url, token=token)
        self.submit_timeout = submit_timeout
        self.session_id = session_id
        self.endpoint = endpoint
        self._remember = remember_credential
        self._credential: calls.Credential | None = None
        self._transport = self._transport_type(self.address, timeout=timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.address.url!r}, session_id={self.session_id!r})"

    def _registered(self, answer: Any, credential: calls.Credential) -> dict[str, Any]:
        """Bind to the session the daemon registered, keeping the credential if allowed."""
        self.session_id = answer["session_id"]
        if self._remember:
            self._credential = credential
        return dict(answer)

    def keep_credential(
        self,
        access_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
    ) -> None:
        """Remember a credential for this client's session without registering it now.

        For a session registered earlier (``session_id=``): if the daemon restarted and lost
        the credential, the client hands this one over, as after :meth:`register_session`.
        """
        self._credential = calls.Credential(
            access_token=access_token, refresh_token=refresh_token, client_id=client_id
        )

    def _revival_for(self, session: Any) -> calls.Call | None:
        """What ensure_followed sends for this session document: None when the daemon holds
        a working credential (it follows the session's tasks), else the remembered one;
        raises :class:`AuthenticationError` saying how to register again when none is."""
        if not isinstance(session, dict) or session.get("credential") in (None, "ok"):
            return None
        revival = self._revival()
        if revival is None:
            raise calls.credential_error(str(self.session_id), str(session.get("credential")))
        return revival

    def _unregistered(self, answer: Any) -> dict[str, Any]:
        self.session_id = None
        self._credential = None
        return dict(answer)

    def _retry_wait(
        self, exc: OrbitError, delay: float, deadline: float, submission_id: str | None
    ) -> float:
        """Seconds to sleep before repeating a submit (or the request of its submission id);
        raises when a repeat cannot help or ``submit_timeout`` is over."""
        return submit_retry_wait(
            exc, delay, deadline, submission_id=submission_id, timeout=self.submit_timeout
        )

    def _poll_call(
        self, task_id: str, deadline: float, polling_interval: float, stop: bool
    ) -> calls.Call | None:
        """The next wait-route request of a polling task_wait (None: time is up)."""
        return calls.poll_call(
            self.session_id, task_id, deadline, polling_interval, stop_on_attention=stop
        )

    def _can_revive(self, exc: RequestError, call: calls.Call) -> bool:
        """Whether ``call`` failed only because the daemon lost a credential we still have."""
        return self._credential is not None and calls.needs_credential_again(exc, call)

    def _revival(self) -> calls.Call | None:
        """The call handing the remembered credential over again (None: nothing to hand)."""
        if self._credential is None or self.session_id is None:
            return None
        return self._credential.register(self.session_id)

    def _revive(self) -> object:
        """Register the session again with the remembered credential (a no-op without one);
        blocking or awaited, as the subclass sends."""
        raise NotImplementedError

    def events(
        self,
        since: int | None = None,
        *,
        task_id: str | None = None,
        topic: str | None = None,
        cursor_file: str | None = None,
        all_sessions: bool = False,
        give_up_after: float | None = None,
    ) -> Stream:
        """Notifications after seq ``since`` (None: from now), reconnecting by itself: an
        iterator (:class:`~.sync_stream.EventStream`) of the blocking client, an async one
        (:class:`~.async_stream.AsyncEventStream`) of the asyncio client.

        Limited to this client's session unless ``all_sessions``. Use it as a context manager
        (``with`` / ``async with``) or close it when done.
        """
        # The transport follows a daemon that moved: stream from where it is now.
        address = self._transport.address
        return self._stream_type(
            url=address.url,
            token=address.token,
            ca_bundle=address.ca_bundle,
            endpoint_file=address.endpoint_file,
            since=since,
            session_id=None if all_sessions else self.session_id,
            task_id=task_id,
            topic=topic,
            cursor_file=cursor_file,
            give_up_after=give_up_after,
            on_reconnect=self._revive,
        )


def submit_retry_wait(
    exc: OrbitError, delay: float, deadline: float, *, submission_id: str | None, timeout: float
) -> float:
    """Seconds to sleep (at most ``delay``) before repeating a submit that failed with
    ``exc``. Raises ``exc`` when a repeat cannot help, and :class:`SubmitUnresolved` when the
    ``time.monotonic()`` ``deadline`` (``timeout`` after the first try) has passed."""
    if not calls.retry_submit(exc):
        raise exc
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        if submission_id is None:
            raise exc
        raise SubmitUnresolved(submission_id, timeout, exc) from exc
    return min(delay, remaining)


def patience_wait(exc: OrbitError, delay: float, deadline: float) -> float:
    """``delay``, the seconds to sleep before asking a daemon that is restarting (or whose
    ledger cannot write for now) again; raises ``exc`` for any other failure, or when the
    ``time.monotonic()`` ``deadline`` would pass during the sleep."""
    if not calls.retry_submit(exc) or time.monotonic() + delay >= deadline:
        raise exc
    return delay
