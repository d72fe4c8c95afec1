"""The blocking ``globus`` plugin client: one method per daemon route, plus the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ..protocol import is_terminal
from . import calls
from .closing import Closing
from .errors import (
    AuthenticationError,
    OrbitError,
    ProtocolError,
    RequestError,
)
from .plugin_base import GlobusPluginBase, patience_wait
from .stream import StreamClosed
from .sync_stream import EventCallback, EventStream, Subscription
from .transport import SyncTransport

__all__ = ["GlobusClient", "patiently"]

T = TypeVar("T")

# Longest a streaming task_wait goes without checking for a reconnection (seconds).
_RECHECK = 1.0


def patiently(deadline: float, fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)``, tried again while the daemon is unreachable (restarting) or cannot
    record for now (503 StorageUnavailable) until the ``time.monotonic()`` ``deadline``: a
    wait's stream reconnects by itself, its requests (and a waiting command's first ones) do
    this."""
    delays = calls.retry_delays(cap=_RECHECK * 2)
    while True:
        try:
            return fn(*args)
        except OrbitError as exc:
            time.sleep(patience_wait(exc, next(delays), deadline))


class GlobusClient(GlobusPluginBase[EventStream], Closing):
    """Blocking client of one daemon's ``globus`` plugin, bound to one Globus session.

    Get one from ``BridgeClient().get_endpoint_client(name).get_plugin('globus')`` or build it
    directly (same URL/token discovery as :class:`~.bridge.BridgeClient`). Call
    :meth:`register_session` first, or pass ``session_id=`` of a session registered earlier.
    Answers are plain dicts as the daemon sends them. :meth:`close` releases the connection;
    the session and its tasks stay tracked by the daemon (:meth:`unregister_session` ends it).

    Unless ``remember_credential=False``, the credential given to :meth:`register_session`
    stays in this object's memory so that a daemon which restarted (and so lost it) gets it
    back: on a ``CredentialMissing`` answer (the call is then retried once) and whenever an
    event stream of this client reconnects.
    """

    _transport: SyncTransport
    _stream_type = EventStream
    _transport_type = SyncTransport

    def close(self) -> None:
        """Release the HTTP connection. The daemon keeps the session and its tasks."""
        self._transport.close()

    def _on_exit(self, *, failed: bool) -> None:
        self.close()

    def _send(self, call: calls.Call) -> Any:
        """Send; if the daemon restarted and lost the credential, hand it over and retry once."""
        try:
            return self._transport.send(call)
        except RequestError as exc:
            if not self._can_revive(exc, call):
                raise
        self._revive()
        return self._transport.send(call)

    def _revive(self) -> None:
        """Register the session again with the remembered credential (a no-op without one)."""
        if (revival := self._revival()) is not None:
            self._transport.send(revival)

    def ensure_followed(self) -> None:
        """Make sure the daemon follows this session's tasks: hand it the remembered
        credential if it lost it (a restart), else raise :class:`AuthenticationError`
        (``CredentialMissing``/``CredentialExpired``) saying how to register it again.
        ``task_wait`` calls it; call it before any other long wait on the session."""
        session = self._transport.send(calls.get_session(self.session_id))
        if (revival := self._revival_for(session)) is not None:
            self._transport.send(revival)

    # Sessions

    def register_session(
        self,
        access_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        local_collection: str | None = None,
        *,
        session_id: str | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Hand a Globus credential to the daemon; returns ``{"session_id", "local_collection"}``.

        Give ``access_token``, or ``refresh_token`` + ``client_id`` (a native app). When this
        client already has a session (or ``session_id`` is given), that session is registered again
        with the fresh credential and keeps all its tasks.
        """
        answer = self._transport.send(
            calls.register_session(
                access_token=access_token,
                refresh_token=refresh_token,
                client_id=client_id,
                local_collection=local_collection,
                session_id=session_id or self.session_id,
                policy=policy,
            )
        )
        credential = calls.Credential(
            access_token=access_token, refresh_token=refresh_token, client_id=client_id
        )
        return self._registered(answer, credential)

    def unregister_session(self) -> dict[str, Any]:
        """End the session at the daemon: it drops the credential and stops polling."""
        return self._unregistered(self._send(calls.unregister_session(self.session_id)))

    def _resolve_submit(
        self, build: Callable[[str], calls.Call], submission_id: str | None
    ) -> dict[str, Any]:
        """Send a submit, repeating it with the same submission_id through connection
        failures, daemon restarts and SubmitPending until the daemon gives an answer or
        ``submit_timeout`` passed (then SubmitUnresolved says what is known)."""
        deadline = time.monotonic() + self.submit_timeout
        delays = calls.retry_delays()
        if submission_id is None:
            submission_id = self._with_retries(self.generate_submission_id, deadline, delays)
        sub_id = submission_id
        return self._with_retries(lambda: dict(self._send(build(sub_id))), deadline, delays, sub_id)

    def _with_retries(
        self,
        fn: Callable[[], T],
        deadline: float,
        delays: Iterator[float],
        submission_id: str | None = None,
    ) -> T:
        while True:
            try:
                return fn()
            except OrbitError as exc:
                time.sleep(self._retry_wait(exc, next(delays), deadline, submission_id))

    def list_sessions(self) -> list[dict[str, Any]]:
        """Every open session of this daemon token: ``session_id, local_collection, auth,
        credential`` (``ok``, ``missing`` after a daemon restart, ``expired``) and
        ``tasks`` (count per status)."""
        return calls.list_of(self._send(calls.list_sessions()), "sessions")

    # Tasks

    def generate_submission_id(self) -> str:
        """A new submission id for :meth:`submit_transfer`/:meth:`delete`, from the daemon
        (globus-sdk's ``get_submission_id``; ``orbit-globus task generate-submission-id``)."""
        answer = self._send(calls.generate_submission_id(self.session_id))
        return str(answer["value"])

    def submit_transfer(
        self,
        source: str,
        destination: str,
        items: Iterable[Mapping[str, Any]],
        label: str | None = None,
        sync_level: str | int | None = None,
        *,
        verify_checksum: bool | None = None,
        preserve_timestamp: bool | None = None,
        deadline: datetime | str | None = None,
        policy: Mapping[str, Any] | None = None,
        skip_source_errors: bool | None = None,
        submission_id: str | None = None,
    ) -> dict[str, Any]:
        """Submit a transfer; returns ``{"task_id", "submission_id", "status"}``.

        ``source``/``destination`` are collection UUIDs or ``"local"``; each item is
        ``{"source": path, "destination": path, "recursive": bool}``. ``status`` is
        ``"QUEUED"`` (and ``task_id`` None) when Globus's limits made the daemon queue it;
        the task id follows in a ``submit_admitted`` event, and every task method accepts
        the submission id meanwhile. The submit is idempotent under ``submission_id`` (one
        is asked from the daemon when not given) and repeated through daemon restarts and
        SubmitPending for up to ``submit_timeout`` seconds (then :class:`SubmitUnresolved`).
        """
        options = calls.transfer_options(
            verify_checksum=verify_checksum,
            preserve_timestamp=preserve_timestamp,
            deadline=deadline,
            policy=policy,
            skip_source_errors=skip_source_errors,
        )
        items = list(items)
        return self._resolve_submit(
            lambda sub: calls.submit_transfer(
                self.session_id,
                source=source,
                destination=destination,
                items=items,
                label=label,
                sync_level=sync_level,
                options=options,
                submission_id=sub,
            ),
            submission_id,
        )

    def delete(
        self,
        collection: str,
        paths: Sequence[str] | str,
        recursive: bool = False,
        label: str | None = None,
        *,
        policy: Mapping[str, Any] | None = None,
        submission_id: str | None = None,
    ) -> dict[str, Any]:
        """Submit a delete task; answers and retries as :meth:`submit_transfer`."""
        return self._resolve_submit(
            lambda sub: calls.delete(
                self.session_id,
                collection=collection,
                paths=paths,
                recursive=recursive,
                label=label,
                policy=policy,
                submission_id=sub,
            ),
            submission_id,
        )

    def get_task(self, task_id: str) -> dict[str, Any]:
        """The daemon's row for the task (status, progress, fatal_error, times, last_seq).

        ``task_id`` may be a submission id: its task's row, or while it has none a row with
        ``task_id`` None and status ``QUEUED``/``SUBMITTING`` (FAILED if it never will)."""
        return dict(self._send(calls.get_task(self.session_id, task_id)))

    def task_event_list(
        self, task_id: str, limit: int = 100, *, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Globus's own events of the task (newest first): faults, pauses, errors."""
        call = calls.task_events(self.session_id, task_id, limit=limit, offset=offset)
        return calls.list_of(self._send(call), "events")

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        """Ask Globus to cancel; returns ``{"task_id", "code", "message"}``."""
        return dict(self._send(calls.cancel_task(self.session_id, task_id)))

    def list_tasks(
        self, limit: int = 100, *, offset: int = 0, status: str | None = None
    ) -> list[dict[str, Any]]:
        """This session's task rows, newest first as the daemon orders them."""
        call = calls.list_tasks(self.session_id, limit=limit, offset=offset, status=status)
        return calls.list_of(self._send(call), "tasks")

    def task_wait(
        self,
        task_id: str,
        timeout: float = 60,
        polling_interval: float = 10,
        *,
        raise_on_failure: bool = False,
        use_stream: bool = True,
        stop_on_attention: bool = False,
    ) -> dict[str, Any]:
        """Wait until the task SUCCEEDED or FAILED and return its final row.

        Follows the daemon's notification stream; if the stream cannot be used it asks the
        daemon's wait route (or always, with ``use_stream=False``), at most
        ``polling_interval`` seconds per request. Raises
        :class:`TaskWaitTimeout` (a ``TimeoutError``) after ``timeout`` seconds, and
        :class:`TaskFailed` for a FAILED task when ``raise_on_failure`` is set. With
        ``stop_on_attention`` it raises :class:`TaskNeedsAttention` as soon as the task
        needs attention (Globus retries an error, it is paused or INACTIVE, or it stalled)
        instead of waiting for a deadline that may be days away.
        """
        deadline = time.monotonic() + timeout
        row = patiently(deadline, self.get_task, task_id)
        stop = stop_on_attention
        if not is_terminal(row.get("status")) and calls.task_of(row) is None:
            # A submission id without a task yet: the daemon's wait route waits through the
            # admission queue until Globus accepted it (or it was refused or cancelled).
            row = self._wait_polling(task_id, deadline, polling_interval, stop, until_task=True)
        task_id = calls.task_of(row) or task_id
        if not calls.stops_wait(row, stop_on_attention=stop):
            patiently(deadline, self.ensure_followed)
            streamed = self._wait_streaming(task_id, row, deadline, stop) if use_stream else None
            row = (
                streamed
                if streamed is not None
                else self._wait_polling(task_id, deadline, polling_interval, stop)
            )
        return calls.finish_wait(
            row,
            task_id,
            timeout,
            raise_on_failure=raise_on_failure,
            stop_on_attention=stop_on_attention,
        )

    def _wait_streaming(
        self, task_id: str, row: Mapping[str, Any], deadline: float, stop: bool = False
    ) -> dict[str, Any] | None:
        """Final row via the stream; None when the stream is unusable (then poll instead)."""
        since = row.get("last_seq")
        try:
            with self.events(
                since=since if isinstance(since, int) else 0, task_id=task_id
            ) as stream:
                connects = 1
                while (remaining := deadline - time.monotonic()) > 0:
                    # Short gets: a reconnection (a daemon restart) is noticed within a
                    # second, to check that the daemon still follows the session.
                    event = stream.get(timeout=min(remaining, _RECHECK))
                    if stream.connects > connects:
                        connects = stream.connects
                        patiently(deadline, self.ensure_followed)
                    if event is None:
                        continue
                    data = event.get("data") or {}
                    if calls.stops_wait(data, stop_on_attention=stop):
                        break
        except AuthenticationError:
            raise
        except (RequestError, StreamClosed, ProtocolError):
            return None
        return patiently(deadline, self.get_task, task_id)

    def _wait_polling(
        self,
        task_id: str,
        deadline: float,
        polling_interval: float,
        stop: bool = False,
        *,
        until_task: bool = False,
    ) -> dict[str, Any]:
        while (call := self._poll_call(task_id, deadline, polling_interval, stop)) is not None:
            answer = patiently(deadline, self._send, call)
            row = calls.polled_row(answer, stop_on_attention=stop, until_task=until_task)
            if row is not None:
                return row
        return patiently(deadline, self.get_task, task_id)

    # Files and collections

    def ls(self, collection: str, path: str | None = None) -> dict[str, Any]:
        """Globus ``file_list`` document of ``path`` on the collection (``"local"`` allowed)."""
        call = calls.ls(self.session_id, collection=collection, path=path)
        return dict(self._send(call))

    def mkdir(self, collection: str, path: str) -> dict[str, Any]:
        call = calls.mkdir(self.session_id, collection=collection, path=path)
        return dict(self._send(call))

    def rename(self, collection: str, oldpath: str, newpath: str) -> dict[str, Any]:
        call = calls.rename(
            self.session_id, collection=collection, oldpath=oldpath, newpath=newpath
        )
        return dict(self._send(call))

    def endpoint_search(
        self, filter_text: str | None = None, limit: int = 25
    ) -> list[dict[str, Any]]:
        """Collections matching ``filter_text`` (Globus endpoint documents)."""
        call = calls.endpoint_search(self.session_id, filter_text=filter_text, limit=limit)
        return calls.list_of(self._send(call), "endpoints")

    def get_endpoint(self, collection: str) -> dict[str, Any]:
        return dict(self._send(calls.get_endpoint(self.session_id, collection)))

    # History and notifications

    def history(
        self,
        task_id: str | None = None,
        status: str | None = None,
        label: str | None = None,
        since: datetime | str | float | None = None,
        until: datetime | str | float | None = None,
        limit: int = 100,
        *,
        view: str = "events",
        after: int | None = None,
        offset: int | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of the ledger: ``{"events": [...], "next_after"}`` or ``{"tasks": [...]}``.

        Covers every session of this daemon token unless ``session_id`` narrows it. For the
        next page of events pass ``after=page["next_after"]``; :meth:`iter_history` does that.
        """
        call = calls.history(
            session_id=session_id,
            task_id=task_id,
            status=status,
            label=label,
            since=since,
            until=until,
            after=after,
            limit=limit,
            offset=offset,
            view=view,
        )
        return dict(self._send(call))

    def iter_history(
        self,
        task_id: str | None = None,
        status: str | None = None,
        label: str | None = None,
        since: datetime | str | float | None = None,
        until: datetime | str | float | None = None,
        *,
        page_size: int = 500,
        session_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every matching ledger event, oldest first, fetching pages as needed."""
        after: int | None = None
        while True:
            page = self.history(
                task_id, status, label, since, until, page_size, after=after, session_id=session_id
            )
            events, after = calls.history_page(page)
            yield from events
            if after is None:
                return

    def subscribe(
        self,
        callback: EventCallback,
        since: int | None = None,
        task_id: str | None = None,
        topic: str | None = None,
        cursor_file: str | None = None,
        *,
        all_sessions: bool = False,
    ) -> Subscription:
        """Call ``callback(event)`` from a background thread for each notification, in order."""
        stream = self.events(
            since, task_id=task_id, topic=topic, cursor_file=cursor_file, all_sessions=all_sessions
        )
        return Subscription(stream, callback, name=f"orbit-events-{self.session_id}")
