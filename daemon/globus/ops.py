"""Every globus-sdk call of the daemon, run off the event loop in a bounded thread pool.

globus-sdk is synchronous (requests); each call runs in ``GlobusOps``'s executor so the
event loop keeps serving while Globus answers slowly, and the pool size bounds how many
Globus requests the daemon has in flight. Every Transfer API call of a session first waits
for its credential's request budget (:mod:`.budget`, :mod:`.gate`): calls through
``SessionClients.call`` (submits, cancels, file operations) as ``Use.SUBMIT``, the poller's
through :meth:`GlobusOps.request` with the use it names. A 429 holds the credential's budget
for its Retry-After. Globus errors are translated here, in one place, into daemon errors
(``map_error``) and classified for the poller and the submitter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import globus_sdk
from globus_sdk.transport import (
    RequestsTransport,
    RetryCheckCollection,
    RetryCheckResult,
    RetryConfig,
    RetryContext,
)

from ...protocol import ErrorCode
from ..errors import DaemonError, ExpiredCredential, GlobusError
from ..runtime.metrics import GLOBUS_ERRORS, GLOBUS_REQUESTS, globus_code
from .budget import DEFAULT_SHARES, RequestBudget, Use
from .credentials import Credential, Secret
from .gate import BudgetGate

__all__ = [
    "GlobusOps",
    "SessionClients",
    "is_auth_failure",
    "is_rate_limited",
    "is_server_error",
    "is_transient",
    "map_error",
    "refusal_code",
    "retry_after",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SessionClients:
    """Two clients over one authorizer: ``api`` retries like the SDK does (submits, ls, ...);
    ``poll`` retries an answered failure once and a timeout never, so the poller can back
    off on its own schedule."""

    api: globus_sdk.TransferClient
    poll: globus_sdk.TransferClient
    authorizer: globus_sdk.authorizers.GlobusAuthorizer
    # The credential's request budget, shared by every session registered with it.
    gate: BudgetGate | None = None

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Blocking ``api.<method>(...)``, renewing a refreshable token after a 401 once more.

        The SDK renews after a 401 only while its retry budget lasts: three 503s and then a
        401 would otherwise report a working refresh token as an expired credential.
        """
        fn = getattr(self.api, method)
        try:
            return fn(*args, **kwargs)
        except globus_sdk.GlobusAPIError as exc:
            renewable = isinstance(self.authorizer, globus_sdk.authorizers.RenewingAuthorizer)
            if exc.http_status != 401 or isinstance(exc, globus_sdk.AuthAPIError) or not renewable:
                raise
            self.authorizer.handle_missing_authorization()
            return fn(*args, **kwargs)

    def close(self) -> None:
        for client in (self.api, self.poll):
            client.transport.session.close()


class _RefreshTokenAuthorizer(globus_sdk.RefreshTokenAuthorizer):
    """Makes the access tokens it obtains known to the log redaction."""

    _issued: Secret | None = None

    def _extract_token_data(self, res: globus_sdk.OAuthRefreshTokenResponse) -> dict[str, Any]:
        data = super()._extract_token_data(res)
        if self._issued is not None:
            self._issued.forget()
        if isinstance(data.get("access_token"), str):
            self._issued = Secret(data["access_token"])
        return data


def _no_retry_without_an_answer(ctx: RetryContext) -> RetryCheckResult:
    """The poll client does not retry a request Globus never answered (a timeout, a refused
    connection): it has already cost up to ``http_timeout``, and the poller's backoff is
    the better judge. Answers (429 after its Retry-After, 5xx, a 401 a refresh token can
    fix) go on to the SDK's own checks."""
    if ctx.exception is not None and ctx.response is None:
        return RetryCheckResult.do_not_retry
    return RetryCheckResult.no_decision


def build_clients(
    credential: Credential, *, http_timeout: float, gate: BudgetGate | None = None
) -> SessionClients:
    """Build the authorizer and clients; blocking (a refresh token is exchanged now)."""
    authorizer: globus_sdk.authorizers.GlobusAuthorizer
    if credential.refresh_token is not None:
        assert credential.client_id is not None
        auth_client = globus_sdk.NativeAppAuthClient(client_id=credential.client_id)
        # The one place a credential leaves its Secret: into the SDK's authorizer.
        authorizer = _RefreshTokenAuthorizer(credential.refresh_token.reveal(), auth_client)
    else:
        assert credential.access_token is not None
        authorizer = globus_sdk.AccessTokenAuthorizer(credential.access_token.reveal())
    api = globus_sdk.TransferClient(
        authorizer=authorizer,
        transport=RequestsTransport(http_timeout=http_timeout),
        retry_config=RetryConfig(max_retries=3, max_sleep=2),
    )
    # One quick retry of an answered failure: a lone 429 or 5xx costs a second instead of a
    # sweep. The client appends the SDK's default checks after this one.
    poll_checks = RetryCheckCollection()
    poll_checks.register_check(_no_retry_without_an_answer)
    poll = globus_sdk.TransferClient(
        authorizer=authorizer,
        transport=RequestsTransport(http_timeout=http_timeout),
        retry_config=RetryConfig(max_retries=1, max_sleep=2, checks=poll_checks),
    )
    return SessionClients(api=api, poll=poll, authorizer=authorizer, gate=gate)


def is_transient(exc: BaseException) -> bool:
    """Globus did not answer definitively: try again later with the same request."""
    if isinstance(exc, globus_sdk.NetworkError):
        return True
    if isinstance(exc, globus_sdk.GlobusAPIError) and not isinstance(exc, globus_sdk.AuthAPIError):
        return exc.http_status in (408, 429) or exc.http_status >= 500
    return False


def refusal_code(exc: BaseException | None, error: DaemonError) -> str:
    """The code a refusal is recorded with: Globus's own, else that of the daemon error."""
    return str(getattr(exc, "code", None) or error.code)


def is_server_error(exc: BaseException) -> bool:
    """Globus answered this one request with a 5xx: other requests may still go through
    (unlike a 429, a refused credential, or no answer at all)."""
    return (
        isinstance(exc, globus_sdk.GlobusAPIError)
        and not isinstance(exc, globus_sdk.AuthAPIError)
        and exc.http_status >= 500
    )


def is_rate_limited(exc: BaseException) -> bool:
    """Globus refused the request for the user's request rate (429)."""
    return (
        isinstance(exc, globus_sdk.GlobusAPIError)
        and not isinstance(exc, globus_sdk.AuthAPIError)
        and exc.http_status == 429
    )


def retry_after(exc: BaseException) -> float | None:
    """Seconds a 429 (or 503) asks to wait: its ``Retry-After`` in seconds (RFC 9110 10.2.3;
    the SDK reads only that form too, ``transport/default_retry_checks.py``), else None."""
    if not isinstance(exc, globus_sdk.GlobusAPIError):
        return None
    value = exc.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def is_auth_failure(exc: BaseException) -> bool:
    """The session's credential no longer works (expired, revoked, refresh refused)."""
    if isinstance(exc, globus_sdk.AuthAPIError):
        # The token endpoint refusing a refresh (400 invalid_grant, 401) means expired.
        return exc.http_status in (400, 401, 403)
    if isinstance(exc, globus_sdk.GlobusAPIError):
        return exc.http_status == 401
    return False


def _required_scopes(exc: globus_sdk.GlobusAPIError) -> list[str]:
    info = exc.info.consent_required
    scopes = list(info.required_scopes or []) if info else []
    if not scopes and isinstance(exc.raw_json, dict):
        raw = exc.raw_json.get("required_scopes")
        if isinstance(raw, list):
            scopes = [str(s) for s in raw]
    return scopes


def _answer_to(status: int, code: str, message: str) -> tuple[int, str, str]:
    """The daemon's status, error code and message for a Globus error answer."""
    if status == 403:
        return 403, "Forbidden", f"Globus refused the request ({code}): {message}"
    if status == 404:
        return 404, ErrorCode.NOT_FOUND, f"Globus found no such object ({code}): {message}"
    if status == 429:
        retry = f"Globus is rate limiting this user ({code}): wait a few seconds and retry"
        return 429, ErrorCode.RATE_LIMITED, retry
    if status == 409:
        return 409, "Conflict", f"Globus rejected the request ({code}): {message}"
    if 400 <= status < 500:
        return 400, ErrorCode.BAD_REQUEST, f"Globus rejected the request ({code}): {message}"
    return 502, ErrorCode.GLOBUS, f"Globus failed ({status} {code}): {message}; retry later"


def map_error(exc: BaseException, *, session_id: str) -> DaemonError:
    """Translate a globus-sdk exception into the daemon error the client is answered with."""
    if isinstance(exc, DaemonError):
        return exc
    if is_auth_failure(exc):
        return ExpiredCredential(session_id=session_id)
    if isinstance(exc, globus_sdk.GlobusAPIError):
        code = str(exc.code or "Unknown")
        status = exc.http_status
        message = str(exc.message or code)
        if code == "ConsentRequired" or exc.info.consent_required:
            scopes = _required_scopes(exc)
            return GlobusError(
                f"Globus needs your consent for scope(s) {', '.join(scopes) or '(not named)'}: "
                "log in again requesting these scopes (e.g. `globus session consent "
                "'<scope>'` or your app's login flow with them), then register the session "
                "again with the new token",
                status=401,
                code=ErrorCode.CONSENT_REQUIRED,
                globus_code=code,
                globus_status=status,
                required_scopes=scopes,
            )
        answer_status, answer_code, what = _answer_to(status, code, message)
        return GlobusError(
            what,
            status=answer_status,
            code=answer_code,
            globus_code=code,
            globus_status=status,
        )
    if isinstance(exc, globus_sdk.NetworkError):
        return GlobusError(
            f"Globus could not be reached ({type(exc).__name__}); retry later",
            status=502,
            code="GlobusUnreachable",
            globus_code=None,
            globus_status=None,
        )
    return DaemonError(f"unexpected error talking to Globus ({type(exc).__name__})")


class GlobusOps:
    """Runs blocking globus-sdk calls in a bounded pool, each Transfer API call of a session
    after its credential's request budget lets it go."""

    def __init__(
        self,
        *,
        threads: int = 16,
        http_timeout: float = 30.0,
        # Budget
        rate_limit: float = 20.0,
        rate_window: float = 10.0,
        early_poll_rate: float = 1.0,
    ) -> None:
        self.http_timeout = http_timeout
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.early_poll_rate = early_poll_rate
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="globus"
        )
        # One gate per credential, alive while a session's clients hold it.
        self._gates: weakref.WeakValueDictionary[str, BudgetGate] = weakref.WeakValueDictionary()

    @property
    def request_rate(self) -> float:
        """Requests/s a credential's budget lets through in the long run."""
        return self._new_budget().rate

    def _new_budget(self) -> RequestBudget:
        return RequestBudget.for_limit(
            limit=self.rate_limit,
            window=self.rate_window,
            shares=DEFAULT_SHARES,
            now=time.monotonic(),
        )

    def gate(self, credential: Credential) -> BudgetGate:
        """The request budget of ``credential`` (one for every session registered with it)."""
        key = credential.budget_key
        gate = self._gates.get(key)
        if gate is None:
            gate = BudgetGate(self._new_budget(), early_rate=self.early_poll_rate)
            self._gates[key] = gate
        return gate

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the pool. A session's ``clients.call`` first waits for
        its credential's budget (as a submit: someone waits for the answer)."""
        owner = getattr(fn, "__self__", None)
        gate = owner.gate if isinstance(owner, SessionClients) else None
        # The metrics' route label: the SDK method (``clients.call`` names it first).
        route = str(args[0]) if getattr(fn, "__name__", "") == "call" and args else fn.__name__
        return await self._send(gate, Use.SUBMIT, route, functools.partial(fn, *args, **kwargs))

    async def submit(
        self,
        clients: SessionClients,
        method: str,
        document: Any,
        *,
        pace: Callable[..., Any] | None = None,
    ) -> Any:
        """``clients.call(method, document)`` as a submit of the credential's budget; ``pace``
        (the admission queue's per-session spacing) wraps the send in the worker thread, so
        the spacing holds at the moment the request leaves."""
        if pace is None:
            call = functools.partial(clients.call, method, document)
        else:
            call = functools.partial(pace, clients.call, method, document)
        return await self._send(clients.gate, Use.SUBMIT, method, call)

    async def request(
        self, clients: SessionClients, use: Use, method: str, /, *args: Any, **kwargs: Any
    ) -> Any:
        """``clients.poll.<method>(...)`` as ``use`` of the credential's budget (the poller)."""
        call = functools.partial(getattr(clients.poll, method), *args, **kwargs)
        return await self._send(clients.gate, use, method, call)

    async def _send(
        self, gate: BudgetGate | None, use: Use, route: str, call: Callable[[], T]
    ) -> T:
        if gate is not None:
            await gate.acquire(use)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, call)
        except Exception as exc:
            code = globus_code(exc)
            GLOBUS_REQUESTS.labels(route=route, code=code).inc()
            GLOBUS_ERRORS.labels(route=route, code=code).inc()
            rate_limited = isinstance(exc, globus_sdk.GlobusAPIError) and is_rate_limited(exc)
            if gate is not None and rate_limited:
                gate.throttled(retry_after(exc))
            raise
        GLOBUS_REQUESTS.labels(route=route, code=globus_code(None, result)).inc()
        return result

    async def _execute(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Off the loop, outside the budget and the metrics (not a Transfer API call)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def clients(self, credential: Credential) -> SessionClients:
        # Not a Transfer API call (at most a token refresh): neither counted nor budgeted.
        return await self._execute(
            build_clients, credential, http_timeout=self.http_timeout, gate=self.gate(credential)
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
