"""Thin HTTP shells that send a :class:`~.calls.Call` and decode the answer.

The only place where httpx exceptions become client exceptions: a failed connection is
:class:`DaemonUnavailable`, everything the daemon answers goes through
:func:`~.calls.decode_answer`.
"""

from __future__ import annotations

from typing import Any

import httpx

from . import calls
from .config import DaemonAddress, relocated
from .errors import DaemonUnavailable
from .tls import ssl_context

__all__ = ["DEFAULT_SUBMIT_TIMEOUT", "DEFAULT_TIMEOUT", "AsyncTransport", "SyncTransport"]

DEFAULT_TIMEOUT = 60.0
# How long a submit is repeated (same submission_id) while the daemon is unreachable or
# answers SubmitPending, before SubmitUnresolved.
DEFAULT_SUBMIT_TIMEOUT = 300.0
_USER_AGENT = "orbit-globus-client/0.1"


def _headers(address: DaemonAddress) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {address.token}",
        "Accept": "application/json",
        "User-Agent": _USER_AGENT,
    }


def _verify(address: DaemonAddress) -> Any:
    """httpx's ``verify=``: the CA bundle's context for an https URL, else the default."""
    return ssl_context(address.ca_bundle) if address.url.startswith("https://") else True


def _request(call: calls.Call, default_timeout: float) -> dict[str, Any]:
    """httpx ``request()`` arguments for ``call``; its read timeout outlasts a long wait."""
    read = default_timeout if call.read_timeout is None else max(default_timeout, call.read_timeout)
    return {
        "method": call.method,
        "url": call.path,
        "params": call.params or None,
        "json": call.body,
        "timeout": httpx.Timeout(default_timeout, read=read),
    }


def _answer(call: calls.Call, response: httpx.Response) -> Any:
    return calls.decode_answer(
        call, response.status_code, response.content, headers=response.headers
    )


def _unavailable(address: DaemonAddress, exc: httpx.TransportError) -> DaemonUnavailable:
    # The message names the failure only; httpx never puts request headers (the token) in it.
    return DaemonUnavailable(address.url, f"{type(exc).__name__}: {exc}".rstrip(": "))


class _Transport:
    """What both shells hold: the daemon's address, the httpx client and the timeout."""

    _http: httpx.Client | httpx.AsyncClient
    _http_type: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(self, address: DaemonAddress, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self._timeout = timeout
        # trust_env=False: the daemon is local and a proxy would only see the bearer token.
        self._http = self._http_type(
            base_url=address.url,
            headers=_headers(address),
            timeout=timeout,
            trust_env=False,
            verify=_verify(address),
        )

    def _relocate(self) -> bool:
        """Follow a daemon that came back on another address; True if it moved."""
        moved = relocated(self.address)
        if moved is None:
            return False
        self.address = moved
        self._http.base_url = httpx.URL(moved.url)
        return True


class SyncTransport(_Transport):
    _http: httpx.Client
    _http_type = httpx.Client

    def send(self, call: calls.Call) -> Any:
        try:
            response = self._http.request(**_request(call, self._timeout))
        except httpx.TransportError as exc:
            if not self._relocate():
                raise _unavailable(self.address, exc) from exc
            try:
                response = self._http.request(**_request(call, self._timeout))
            except httpx.TransportError as again:
                raise _unavailable(self.address, again) from again
        return _answer(call, response)

    def close(self) -> None:
        self._http.close()


class AsyncTransport(_Transport):
    _http: httpx.AsyncClient
    _http_type = httpx.AsyncClient

    async def send(self, call: calls.Call) -> Any:
        try:
            response = await self._http.request(**_request(call, self._timeout))
        except httpx.TransportError as exc:
            if not self._relocate():
                raise _unavailable(self.address, exc) from exc
            try:
                response = await self._http.request(**_request(call, self._timeout))
            except httpx.TransportError as again:
                raise _unavailable(self.address, again) from again
        return _answer(call, response)

    async def aclose(self) -> None:
        await self._http.aclose()
