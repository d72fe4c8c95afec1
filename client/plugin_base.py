"""What the blocking and the asyncio ``globus`` clients share, without I/O.

The daemon address, the session a client is bound to, the credential it remembers for a
daemon that restarted, and the options of its event streams. The two subclasses add only
the sending, awaited or not (:mod:`.globus`, :mod:`.aio`).
"""

from __future__ import annotations

from typing import Any

from . import calls
from .config import DaemonAddress, resolve_address
from .errors import OrbitError, RequestError
from .transport import DEFAULT_SUBMIT_TIMEOUT, DEFAULT_TIMEOUT, AsyncTransport, SyncTransport

__all__ = ["GlobusPluginBase"]


class GlobusPluginBase:
    """The constructor of both clients (see :class:`~.globus.GlobusClient`); a subclass
    names its transport, blocking or asyncio."""

    _transport: SyncTransport | AsyncTransport
    _transport_type: type[SyncTransport] | type[AsyncTransport]

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
        return calls.submit_retry_wait(
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

    def _current_address(self) -> DaemonAddress:
        """Where the daemon is now (the transport follows it when it moves)."""
        return self._transport.address

    def _stream_options(
        self,
        since: int | None,
        *,
        task_id: str | None,
        topic: str | None,
        cursor_file: str | None,
        all_sessions: bool,
        give_up_after: float | None,
    ) -> dict[str, Any]:
        """The arguments of an event stream for this client's session (or all of them)."""
        address = self._current_address()
        return {
            "url": address.url,
            "token": address.token,
            "ca_bundle": address.ca_bundle,
            "endpoint_file": address.endpoint_file,
            "since": since,
            "session_id": None if all_sessions else self.session_id,
            "task_id": task_id,
            "topic": topic,
            "cursor_file": cursor_file,
            "give_up_after": give_up_after,
        }
