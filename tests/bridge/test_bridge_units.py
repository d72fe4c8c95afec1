"""The bridge's pure parts without sockets: link frames, relay decisions, tokens, settings."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit.bridge import frames
from radical.orbit.bridge.config import load_config
from radical.orbit.bridge.errors import (
    BadRequest,
    BridgeError,
    ConfigError,
    EndpointOffline,
    ProtocolViolation,
    RelayTimeout,
    Unauthorized,
)
from radical.orbit.bridge.link import EndpointLink
from radical.orbit.bridge.registry import Registry
from radical.orbit.bridge.relay import WAIT_GRACE, StreamCursor, relay_timeout
from radical.orbit.daemon.api.bridge_link import coalesce, enrollment_token, link_url
from radical.orbit.daemon.errors import ConfigError as DaemonConfigError
from radical.orbit.daemon.runtime.config import load_config as load_daemon_config

ids = st.integers(1, 2**53 - 1)
text = st.text(max_size=50)
any_frame = st.one_of(
    st.builds(frames.Hello, endpoint=st.dictionaries(text, text, max_size=3)),
    st.builds(
        frames.Request,
        id=ids,
        owner=text,
        method=st.sampled_from(["GET", "POST"]),
        path=text,
        query=text,
        content_type=st.none() | text,
        body=st.binary(max_size=200),
        timeout=st.floats(0.1, 1e6),
    ),
    st.builds(
        frames.Response,
        id=ids,
        status=st.integers(100, 599),
        content_type=st.none() | text,
        body=st.binary(max_size=200),
        headers=st.dictionaries(text, text, max_size=2),
    ),
    st.builds(frames.Cancel, id=ids),
    st.builds(frames.WsOpen, id=ids, owner=text, query=text),
    st.builds(frames.WsAccept, id=ids),
    st.builds(frames.WsRefused, id=ids, status=st.integers(100, 599), body=st.binary()),
    st.builds(frames.WsMessage, id=ids, text=text),
    st.builds(frames.WsFanout, ids=st.lists(ids, min_size=1, max_size=5).map(tuple), text=text),
    st.builds(frames.WsClose, id=ids, code=st.integers(1000, 4999), reason=text),
)


@given(any_frame)
def test_every_frame_survives_encoding(frame: frames.Frame) -> None:
    assert frames.decode(frames.encode(frame)) == frame


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"type": "nope"}',
        '{"type": "cancel"}',
        '{"type": "cancel", "id": 0}',
        '{"type": "cancel", "id": true}',
        '{"type": "response", "id": 1, "status": "200"}',
        '{"type": "response", "id": 1, "status": 200, "body": "***"}',
    ],
)
def test_broken_frames_are_protocol_violations(raw: str) -> None:
    with pytest.raises(ProtocolViolation):
        frames.decode(raw)


@given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["a", "b"])), max_size=30))
def test_coalescing_keeps_every_streams_messages_in_order(sent: list[tuple[int, str]]) -> None:
    batch: list[frames.Frame] = [frames.WsMessage(id=i, text=t) for i, t in sent]
    batch.insert(len(batch) // 2, frames.Cancel(id=99))
    out = coalesce(batch)
    delivered: list[tuple[int, str]] = []
    for frame in out:
        if isinstance(frame, frames.WsFanout):
            delivered += [(i, frame.text) for i in frame.ids]
        elif isinstance(frame, frames.WsMessage):
            delivered.append((frame.id, frame.text))
    for stream in range(1, 5):
        assert [t for i, t in delivered if i == stream] == [t for i, t in sent if i == stream]
    assert sum(isinstance(f, frames.Cancel) for f in out) == 1


def test_a_fanout_of_one_event_is_one_frame() -> None:
    batch: list[frames.Frame] = [frames.WsMessage(id=i, text="e") for i in range(1, 301)]
    assert coalesce(batch) == [frames.WsFanout(ids=tuple(range(1, 301)), text="e")]


def test_a_request_never_shows_its_body() -> None:
    frame = frames.Request(id=1, owner="a", method="POST", path="/x", body=b"secret-token")
    assert "secret" not in repr(frame)


def test_relay_timeout_outlasts_a_task_wait() -> None:
    assert relay_timeout("globus/sessions/s/tasks", b"", default=60) == 60
    wait = "globus/sessions/s/tasks/t/wait"
    assert relay_timeout(wait, b"", default=30) == 60 + WAIT_GRACE
    assert relay_timeout(wait, b'{"timeout": 300}', default=60) == 300 + WAIT_GRACE
    assert relay_timeout(wait, b'{"timeout": 1}', default=60) == 60
    assert relay_timeout(wait, b"junk", default=60) == 60


def test_stream_cursor_follows_events_and_the_first_heartbeat() -> None:
    cursor = StreamCursor("since=5&session_id=x")
    assert cursor.last == 5
    cursor.sent(json.dumps({"type": "heartbeat", "head": 9}))
    assert cursor.last == 5
    cursor.sent(json.dumps({"type": "event", "seq": 7}))
    assert cursor.last == 7
    cursor.sent('{"type":"event","seq":12,"time":1.0}')  # the daemon's compact form
    assert cursor.last == 12
    live = StreamCursor("")
    live.sent(json.dumps({"type": "heartbeat", "head": 9}))
    assert live.last == 9


def test_registry_keeps_hashes_only_in_private_files(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    enrollment = registry.add_endpoint("site-a")
    token = registry.add_client("alice", ["site-a"])
    for name in ("endpoints.json", "clients.json"):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert enrollment not in path.read_text() and token not in path.read_text()
    assert registry.verify_endpoint(enrollment) == "site-a"
    client = registry.verify_client(token)
    assert client.may_use("site-a") and not client.may_use("site-b")
    assert registry.verify_client(registry.add_client("root", [])).may_use("anything")
    with pytest.raises(Unauthorized):
        registry.verify_client(enrollment)
    with pytest.raises(BadRequest):
        registry.add_endpoint("site-a")
    with pytest.raises(BadRequest):
        registry.add_client("bad name", [])
    # A second process (the CLI) adding a name is seen at once.
    Registry(tmp_path).add_endpoint("site-b")
    assert registry.endpoint_names() == ["site-a", "site-b"]


def test_errors_name_the_endpoint_and_share_one_root() -> None:
    offline = EndpointOffline("site-c")
    assert isinstance(offline, BridgeError)
    assert offline.status == 503 and "site-c" in str(offline)
    assert offline.body()["endpoint"] == "site-c"


def test_bridge_settings_from_environment(tmp_path: Path) -> None:
    config = load_config(
        env={"RADICAL_ORBIT_BRIDGE_STATE_DIR": str(tmp_path), "RADICAL_ORBIT_BRIDGE_PORT": "9"}
    )
    assert config.port == 9 and config.state_dir == tmp_path and not config.tls
    with pytest.raises(ConfigError):
        load_config(env={"RADICAL_ORBIT_BRIDGE_PORT": "70000"})


def test_endpoint_takes_its_enrollment_token_never_from_a_flag(tmp_path: Path) -> None:
    env = {
        "RADICAL_ORBIT_STATE_DIR": str(tmp_path),
        "RADICAL_ORBIT_BRIDGE_URL": "https://bridge.example:8443",
        "RADICAL_ORBIT_BRIDGE_TOKEN": "enroll-me-please-0123456789",
    }
    config = load_daemon_config(env=env)
    assert config.bridge_url == "https://bridge.example:8443"
    assert "enroll-me" not in repr(config)
    assert enrollment_token(config, {}) == "enroll-me-please-0123456789"
    with pytest.raises(DaemonConfigError, match="never taken from the command line"):
        load_daemon_config(env=env, flags={"bridge_token": "x"})
    (tmp_path / "bridge-token").write_text("from-a-credential\n")
    bare = load_daemon_config(env={"RADICAL_ORBIT_STATE_DIR": str(tmp_path)})
    assert enrollment_token(bare, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "from-a-credential"
    assert enrollment_token(bare, {}) is None


def test_link_url() -> None:
    assert link_url("https://b.example:8443/") == "wss://b.example:8443/link"
    assert link_url("http://127.0.0.1:1") == "ws://127.0.0.1:1/link"


def test_every_bridge_module_exports_what_it_names() -> None:
    import importlib
    import pkgutil

    import radical.orbit.bridge as package

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"radical.orbit.bridge.{info.name}")
        assert hasattr(module, "__all__"), info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"


async def test_each_relayed_request_has_its_own_timeout_and_a_lost_link_fails_all() -> None:
    sent: list[frames.Frame] = []

    async def send(text: str) -> None:
        sent.append(frames.decode(text))

    link = EndpointLink("site-x", {}, send)
    args = {"owner": "a", "method": "GET", "query": "", "content_type": None, "body": b""}
    slow = asyncio.create_task(link.request(path="/slow", answer_within=0.2, **args))
    fast = asyncio.create_task(link.request(path="/fast", answer_within=30, **args))
    await asyncio.sleep(0.05)
    fast_id = next(f.id for f in sent if isinstance(f, frames.Request) and f.path == "/fast")
    link.received(frames.Response(id=fast_id, status=200, body=b"{}"))
    assert (await fast).status == 200
    with pytest.raises(RelayTimeout, match="site-x"):
        await slow
    assert any(isinstance(f, frames.Cancel) for f in sent)  # the endpoint may stop working
    pending = asyncio.create_task(link.request(path="/lost", answer_within=30, **args))
    await asyncio.sleep(0.05)
    link.close()
    with pytest.raises(EndpointOffline, match="site-x"):
        await pending
    with pytest.raises(EndpointOffline):
        await link.request(path="/after", answer_within=30, **args)
