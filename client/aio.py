"""The asyncio ``globus`` plugin client: the same methods as :class:`GlobusClient`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime
from typing import Any, TypeVar

from ..protocol import is_terminal
from . import calls
from .async_stream import AsyncEventCallback, AsyncEventStream, AsyncSubscription
from .closing import AsyncClosing
from .errors import (
    AuthenticationError,
    OrbitError,
    ProtocolError,
    RequestError,
)
from .plugin_base import GlobusPluginBase, patience_wait
from .stream import StreamClosed
from .transport import AsyncTransport

__all__ = ["AsyncGlobusClient"]

T = TypeVar("T")

# Longest a streaming task_wait goes without checking for a reconnection (seconds).
_RECHECK = 1.0


class AsyncGlobusClient(GlobusPluginBase[AsyncEventStream], AsyncClosing):
    """asyncio client of one daemon's ``globus`` plugin, bound to one Globus session.

    Every method of :class:`~.globus.GlobusClient` exists here as a coroutine with the same
    arguments and answers. Use ``async with`` or ``await client.aclose()``.
    """

    _transport: AsyncTransport
    _stream_type = AsyncEventStream
    _transport_type = AsyncTransport

    async def aclose(self) -> None:
        """Release the HTTP connection. The daemon keeps the session and its tasks."""
        await self._transport.aclose()

    async def close(self) -> None:
        await self.aclose()

    async def _on_exit(self, *, failed: bool) -> None:
        await self.aclose()

    async def _send(self, call: calls.Call) -> Any:
        """Send; if the daemon restarted and lost the credential, hand it over and retry once."""
        try:
            return await self._transport.send(call)
        except RequestError as exc:
            if not self._can_revive(exc, call):
                raise
        await self._revive()
        return await self._transport.send(call)

    async def _revive(self) -> None:
        """Register the session again with the remembered credential (a no-op without one)."""
        if (revival := self._revival()) is not None:
            await self._transport.send(revival)

    async def ensure_followed(self) -> None:
        """As :meth:`GlobusClient.ensure_followed`."""
        session = await self._transport.send(calls.get_session(self.session_id))
        if (revival := self._revival_for(session)) is not None:
            await self._transport.send(revival)

    async def list_endpoints(self) -> list[str]:
        answer = await self._send(calls.list_endpoints())
        return [str(ep["name"]) for ep in calls.list_of(answer, "endpoints")]

    async def register_session(
        self,
        access_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        local_collection: str | None = None,
        *,
        session_id: str | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        answer = await self._transport.send(
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

    async def unregister_session(self) -> dict[str, Any]:
        return self._unregistered(await self._send(calls.unregister_session(self.session_id)))

    async def _resolve_submit(
        self, build: Callable[[str], calls.Call], submission_id: str | None
    ) -> dict[str, Any]:
        """Send a submit, repeated with the same submission_id; see GlobusClient."""
        deadline = time.monotonic() + self.submit_timeout
        delays = calls.retry_delays()
        if submission_id is None:
            submission_id = await self._with_retries(self.generate_submission_id, deadline, delays)
        sub_id = submission_id

        async def once() -> dict[str, Any]:
            return dict(await self._send(build(sub_id)))

        return await self._with_retries(once, deadline, delays, sub_id)

    async def _with_retries(
        self,
        fn: Callable[[], Awaitable[T]],
        deadline: float,
        delays: Iterator[float],
        submission_id: str | None = None,
    ) -> T:
        while True:
            try:
                return await fn()
            except OrbitError as exc:
                await asyncio.sleep(self._retry_wait(exc, next(delays), deadline, submission_id))

    async def generate_submission_id(self) -> str:
        answer = await self._send(calls.generate_submission_id(self.session_id))
        return str(answer["value"])

    async def list_sessions(self) -> list[dict[str, Any]]:
        return calls.list_of(await self._send(calls.list_sessions()), "sessions")

    async def submit_transfer(
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
        options = calls.transfer_options(
            verify_checksum=verify_checksum,
            preserve_timestamp=preserve_timestamp,
            deadline=deadline,
            policy=policy,
            skip_source_errors=skip_source_errors,
        )
        items = list(items)
        return await self._resolve_submit(
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

    async def delete(
        self,
        collection: str,
        paths: Sequence[str] | str,
        recursive: bool = False,
        label: str | None = None,
        *,
        policy: Mapping[str, Any] | None = None,
        submission_id: str | None = None,
    ) -> dict[str, Any]:
        return await self._resolve_submit(
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

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self._send(calls.get_task(self.session_id, task_id)))

    async def task_event_list(
        self, task_id: str, limit: int = 100, *, offset: int = 0
    ) -> list[dict[str, Any]]:
        call = calls.task_events(self.session_id, task_id, limit=limit, offset=offset)
        return calls.list_of(await self._send(call), "events")

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self._send(calls.cancel_task(self.session_id, task_id)))

    async def list_tasks(
        self, limit: int = 100, *, offset: int = 0, status: str | None = None
    ) -> list[dict[str, Any]]:
        call = calls.list_tasks(self.session_id, limit=limit, offset=offset, status=status)
        return calls.list_of(await self._send(call), "tasks")

    async def task_wait(
        self,
        task_id: str,
        timeout: float = 60,  # noqa: ASYNC109 -- the seed signature, same as the sync client
        polling_interval: float = 10,
        *,
        raise_on_failure: bool = False,
        use_stream: bool = True,
        stop_on_attention: bool = False,
    ) -> dict[str, Any]:
        """Wait for SUCCEEDED or FAILED via the stream, else the wait route; see GlobusClient."""
        deadline = time.monotonic() + timeout
        row = await self._patiently(deadline, self.get_task, task_id)
        stop = stop_on_attention
        if not is_terminal(row.get("status")) and calls.task_of(row) is None:
            row = await self._wait_polling(
                task_id, deadline, polling_interval, stop, until_task=True
            )
        task_id = calls.task_of(row) or task_id
        if not calls.stops_wait(row, stop_on_attention=stop):
            await self._patiently(deadline, self.ensure_followed)
            streamed = None
            if use_stream:
                streamed = await self._wait_streaming(task_id, row, deadline, stop)
            if streamed is None:
                streamed = await self._wait_polling(task_id, deadline, polling_interval, stop)
            row = streamed
        return calls.finish_wait(
            row,
            task_id,
            timeout,
            raise_on_failure=raise_on_failure,
            stop_on_attention=stop_on_attention,
        )

    @staticmethod
    async def _patiently(deadline: float, fn: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """As :func:`.globus.patiently`, awaited."""
        delays = calls.retry_delays(cap=_RECHECK * 2)
        while True:
            try:
                return await fn(*args)
            except OrbitError as exc:
                await asyncio.sleep(patience_wait(exc, next(delays), deadline))

    async def _wait_streaming(
        self, task_id: str, row: Mapping[str, Any], deadline: float, stop: bool = False
    ) -> dict[str, Any] | None:
        since = row.get("last_seq")
        try:
            async with self.events(
                since=since if isinstance(since, int) else 0, task_id=task_id
            ) as stream:
                connects = 1
                while (remaining := deadline - time.monotonic()) > 0:
                    event = await stream.get(timeout=min(remaining, _RECHECK))
                    if stream.connects > connects:
                        connects = stream.connects
                        await self._patiently(deadline, self.ensure_followed)
                    if event is None:
                        continue
                    if calls.stops_wait(event.get("data") or {}, stop_on_attention=stop):
                        break
        except AuthenticationError:
            raise
        except (RequestError, StreamClosed, ProtocolError):
            return None
        return await self._patiently(deadline, self.get_task, task_id)

    async def _wait_polling(
        self,
        task_id: str,
        deadline: float,
        polling_interval: float,
        stop: bool = False,
        *,
        until_task: bool = False,
    ) -> dict[str, Any]:
        while (call := self._poll_call(task_id, deadline, polling_interval, stop)) is not None:
            answer = await self._patiently(deadline, self._send, call)
            row = calls.polled_row(answer, stop_on_attention=stop, until_task=until_task)
            if row is not None:
                return row
        return await self._patiently(deadline, self.get_task, task_id)

    async def ls(self, collection: str, path: str | None = None) -> dict[str, Any]:
        call = calls.ls(self.session_id, collection=collection, path=path)
        return dict(await self._send(call))

    async def mkdir(self, collection: str, path: str) -> dict[str, Any]:
        call = calls.mkdir(self.session_id, collection=collection, path=path)
        return dict(await self._send(call))

    async def rename(self, collection: str, oldpath: str, newpath: str) -> dict[str, Any]:
        call = calls.rename(
            self.session_id, collection=collection, oldpath=oldpath, newpath=newpath
        )
        return dict(await self._send(call))

    async def endpoint_search(
        self, filter_text: str | None = None, limit: int = 25
    ) -> list[dict[str, Any]]:
        call = calls.endpoint_search(self.session_id, filter_text=filter_text, limit=limit)
        return calls.list_of(await self._send(call), "endpoints")

    async def get_endpoint(self, collection: str) -> dict[str, Any]:
        return dict(await self._send(calls.get_endpoint(self.session_id, collection)))

    async def history(
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
        return dict(await self._send(call))

    async def iter_history(
        self,
        task_id: str | None = None,
        status: str | None = None,
        label: str | None = None,
        since: datetime | str | float | None = None,
        until: datetime | str | float | None = None,
        *,
        page_size: int = 500,
        session_id: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        after: int | None = None
        while True:
            page = await self.history(
                task_id, status, label, since, until, page_size, after=after, session_id=session_id
            )
            events, after = calls.history_page(page)
            for event in events:
                yield event
            if after is None:
                return

    def subscribe(
        self,
        callback: AsyncEventCallback,
        since: int | None = None,
        task_id: str | None = None,
        topic: str | None = None,
        cursor_file: str | None = None,
        *,
        all_sessions: bool = False,
    ) -> AsyncSubscription:
        """Run ``callback(event)`` (plain or async) for each notification in an asyncio task."""
        stream = self.events(
            since, task_id=task_id, topic=topic, cursor_file=cursor_file, all_sessions=all_sessions
        )
        return AsyncSubscription(stream, callback)
