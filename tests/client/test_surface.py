"""The public surface: exports stay consistent, secrets stay out of reprs and errors,
refusals of the event stream are clear, and watch draws in place on a terminal."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil

import pytest
from client_helpers import DST, SRC, godata_items

import radical.orbit
from radical.orbit import (
    AsyncGlobusClient,
    AuthenticationError,
    GlobusClient,
    StreamClosed,
)
from radical.orbit.client import cli
from radical.orbit.client.config import DaemonAddress
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

# Every name the package exports, on purpose: adding or removing one is a change of the
# public API and has to show up here. Grouped by role rather than copied from the sorted
# __all__ lists, which it checks.
EXPORTED = {
    *("BridgeClient", "EndpointClient", "GlobusClient", "AsyncGlobusClient"),
    *("EventStream", "Subscription", "AsyncEventStream", "AsyncSubscription", "StreamClosed"),
    *("OrbitError", "ConfigurationError", "NoSessionError", "ArgumentError"),
    *("DaemonUnavailable", "ProtocolError", "LedgerBehind"),
    *("RequestError", "BadRequestError", "AuthenticationError", "ConsentRequiredError"),
    *("PermissionDeniedError", "NotFoundError", "ConflictError", "RateLimitedError"),
    *("GlobusError", "SubmitPendingError", "SubmitUnresolved"),
    *("TaskFailed", "TaskNeedsAttention", "TaskWaitTimeout"),
    *("__version__", "errors"),
}
MODULES = sorted(
    m.name
    for m in pkgutil.iter_modules(importlib.import_module("radical.orbit.client").__path__)
    if m.name != "__main__"
)


def test_the_package_exports_exactly_its_public_names() -> None:
    assert set(radical.orbit.__all__) == EXPORTED
    assert len(radical.orbit.__all__) == len(EXPORTED)  # no name listed twice


def test_every_exported_name_exists_and_the_top_package_reexports_the_client() -> None:
    client = importlib.import_module("radical.orbit.client")
    for name in MODULES:
        module = importlib.import_module(f"radical.orbit.client.{name}")
        for exported in module.__all__:
            assert hasattr(module, exported), f"{name}.{exported}"
    assert set(client.__all__) <= set(radical.orbit.__all__)
    for exported in radical.orbit.__all__:
        assert hasattr(radical.orbit, exported)
    errors = importlib.import_module("radical.orbit.client.errors")
    for exported in errors.__all__:
        obj = getattr(errors, exported)
        if isinstance(obj, type):
            assert issubclass(obj, errors.OrbitError)


def test_tokens_stay_out_of_reprs_and_errors(daemon: DaemonProcess, user: Credentials) -> None:
    address = DaemonAddress(url=daemon.url, token=daemon.token)
    assert daemon.token not in repr(address)
    globus = GlobusClient(daemon.url, daemon.token)
    assert daemon.token not in repr(globus)
    globus.register_session(access_token="definitely-not-valid-" + user.access_token[:4])
    with pytest.raises(AuthenticationError) as bad:
        globus.ls(SRC, "/home/share/godata/")  # Globus rejects it on first use
    text = f"{bad.value} {bad.value.info}"
    assert "definitely-not-valid" not in text
    assert daemon.token not in text
    globus.close()


def test_stream_refusals_are_errors_not_endless_retries(
    daemon: DaemonProcess, globus: GlobusClient
) -> None:
    stranger = GlobusClient(daemon.url, "wrong-token")
    with pytest.raises(AuthenticationError):
        stranger.events(since=0, all_sessions=True).get(timeout=10 * UNIT)
    with pytest.raises(StreamClosed) as closed:
        globus.events(since=0, topic="no-such-topic").get(timeout=10 * UNIT)
    assert closed.value.fatal
    assert "no-such-topic" in str(closed.value)
    stranger.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_redraws_in_place_on_a_terminal(
    daemon: DaemonProcess, globus: GlobusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADICAL_ORBIT_URL", daemon.url)
    monkeypatch.setenv("RADICAL_ORBIT_TOKEN", daemon.token)
    for dest in ("/~/t1/", "/~/t2/"):
        globus.task_wait(globus.submit_transfer(SRC, DST, godata_items(dest))["task_id"])
    out, err = Terminal(), io.StringIO()
    argv = [f"--session={globus.session_id}", "watch", "--after", "0", "--until-done"]
    assert cli.main([*argv, "--timeout", "20"], out=out, err=err) == 0, err.getvalue()
    screen = out.getvalue()
    assert "\x1b[2F" in screen  # moved up over the two task lines to redraw them
    final = screen.rsplit("\x1b[2F", 1)[-1]
    assert final.count("SUCCEEDED") == 2


SEED_SIGNATURES = {
    "register_session": "(access_token=None, refresh_token=None, client_id=None, "
    "local_collection=None",
    "submit_transfer": "(source, destination, items, label=None, sync_level=None",
    "get_task": "(task_id",
    "task_wait": "(task_id, timeout=60, polling_interval=10",
    "cancel_task": "(task_id",
    "list_tasks": "(limit=100",
    "ls": "(collection, path=None",
    "mkdir": "(collection, path",
    "rename": "(collection, oldpath, newpath",
    "delete": "(collection, paths, recursive=False, label=None",
    "endpoint_search": "(filter_text=None, limit=25",
    "get_endpoint": "(collection",
    "history": "(task_id=None, status=None, label=None, since=None, until=None, limit=100",
    "subscribe": "(callback, since=None, task_id=None, topic=None, cursor_file=None",
    "events": "(since=None",
    "close": "(",
}


@pytest.mark.parametrize("cls", [GlobusClient, AsyncGlobusClient])
def test_seed_methods_keep_their_signatures(cls: type) -> None:
    for name, start in SEED_SIGNATURES.items():
        params = list(inspect.signature(getattr(cls, name)).parameters.values())[1:]
        text = "(" + ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in params
        )
        assert text.startswith(start), f"{cls.__name__}.{name}{text}"
