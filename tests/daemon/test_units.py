"""Pure parts of the daemon: the poller's diff, configuration, secrets and log redaction."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import structlog
from daemon_helpers import task_doc, task_row
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit.daemon.api.auth import TokenStore, credential_hash
from radical.orbit.daemon.errors import ConfigError, LocalCollectionUnknown, Unauthorized
from radical.orbit.daemon.globus.credentials import Credential, Secret
from radical.orbit.daemon.globus.local_collection import (
    resolve_collection,
    resolve_default_local_collection,
)
from radical.orbit.daemon.poller.diff import diff
from radical.orbit.daemon.runtime.config import load_config
from radical.orbit.daemon.runtime.logs import configure_logging
from radical.orbit.daemon.service.sessions import new_sid
from radical.orbit.ledger import TaskRow
from radical.orbit.ledger import events as ev
from radical.orbit.protocol import TERMINAL_STATUSES as TERMINAL

STATUS = st.sampled_from(["ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED"])
NICE = st.sampled_from([None, "OK", "Queued", "PAUSED_BY_ADMIN", "FILE_NOT_FOUND"])
COUNT = st.integers(min_value=0, max_value=10**12)
IDS = st.sampled_from([f"task-{i}" for i in range(6)])


ROWS = st.dictionaries(IDS, st.tuples(STATUS, NICE, COUNT, COUNT), max_size=6).map(
    lambda d: {k: task_row(k, *v) for k, v in d.items()}
)
DOCS = st.lists(
    st.builds(task_doc, IDS, STATUS, NICE, COUNT, COUNT),
    max_size=8,
    unique_by=lambda d: d["task_id"],
)


def _apply(rows: dict[str, TaskRow], events: list[ev.Event]) -> dict[str, TaskRow]:
    out = dict(rows)
    for event in events:
        assert isinstance(event, ev.TaskStateChanged | ev.TaskProgress)
        out[event.task_id] = out[event.task_id]._replace(
            status=event.status,
            nice_status=event.nice_status,
            bytes_transferred=event.bytes_transferred,
            files_transferred=event.files_transferred,
        )
    return out


@given(ROWS, DOCS)
def test_diff_properties(rows: dict[str, TaskRow], docs: list[dict[str, Any]]) -> None:
    events = diff(rows, docs)
    touched = [e.task_id for e in events]  # type: ignore[attr-defined]
    assert len(touched) == len(set(touched))  # at most one event per task
    for event in events:
        row = rows[event.task_id]  # type: ignore[attr-defined]  # never an unknown task
        assert row.status not in TERMINAL  # terminal tasks never change again
        doc = next(d for d in docs if d["task_id"] == event.task_id)  # type: ignore[attr-defined]
        assert event.status == doc["status"]  # type: ignore[attr-defined]
        if isinstance(event, ev.TaskProgress):
            assert (row.status, row.nice_status) == (doc["status"], doc["nice_status"])
        else:
            assert isinstance(event, ev.TaskStateChanged)
            assert (row.status, row.nice_status) != (doc["status"], doc["nice_status"])
            assert (event.fatal_error is not None) == (doc["status"] == "FAILED")
    # Applying the events brings the rows up to date: a second diff finds nothing.
    assert diff(_apply(rows, events), docs) == []


def test_diff_ignores_malformed_documents() -> None:
    rows = {"t": task_row("t", "ACTIVE", "OK", 0, 0)}
    docs: list[dict[str, Any]] = [
        {"task_id": "t", "status": "EXPLODED"},
        {"status": "SUCCEEDED"},
        {"task_id": 5, "status": "SUCCEEDED"},
    ]
    assert diff(rows, docs) == []


def test_config_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "endpoint.toml"
    toml.write_text('poll_interval = 3.0\nname = "from-file"\nport = 1111\n')
    env = {
        "RADICAL_ORBIT_STATE_DIR": str(tmp_path / "env-state"),
        "RADICAL_ORBIT_POLL_INTERVAL": "2.0",
        "RADICAL_ORBIT_GLOBUS_COLLECTION": "env-collection",
    }
    config = load_config(flags={"poll_interval": 1.0}, env=env, config_file=toml)
    assert config.poll_interval == 1.0  # flag over env over file
    assert config.name == "from-file"
    assert config.port == 1111
    assert config.local_collection == "env-collection"
    assert config.state_dir == tmp_path / "env-state"
    assert config.host == "127.0.0.1"
    defaults = load_config(flags={}, env={"STATE_DIRECTORY": "/var/lib/orbit"})
    assert defaults.poll_interval == 10.0
    assert defaults.state_dir == Path("/var/lib/orbit")


@pytest.mark.parametrize(
    ("flags", "env", "text", "message"),
    [
        ({"poll_interval": 0}, {}, None, "poll_interval must be positive"),
        ({}, {"RADICAL_ORBIT_PORT": "http"}, None, "RADICAL_ORBIT_PORT"),
        ({}, {}, "colour = 1\n", "unknown key 'colour'"),
        ({}, {}, "port = [\n", "cannot read config file"),
    ],
)
def test_config_errors_name_the_source(
    tmp_path: Path, flags: dict[str, Any], env: dict[str, str], text: str | None, message: str
) -> None:
    path = None
    if text is not None:
        path = tmp_path / "c.toml"
        path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(
            flags=flags, env={"RADICAL_ORBIT_STATE_DIR": str(tmp_path), **env}, config_file=path
        )
    assert message in error.value.message


def test_token_store(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state")
    assert store.ensure() is True
    assert store.ensure() is False
    default = (tmp_path / "state" / "token").read_text().strip()
    assert store.verify(default) == "default"
    added = store.add("bob")
    bob_id = store.verify(added)
    assert bob_id not in ("bob", "default")
    # Another process (``token add``) adds a token while the daemon runs: it is picked up.
    other = TokenStore(tmp_path / "state")
    assert other.ensure() is False
    carol = other.add("carol")
    assert store.verify(carol) not in (bob_id, "carol")
    # Deleting bob and adding a new bob: a new identity, never the old one's.
    other.delete("bob")
    assert store.reload_if_changed() == {bob_id}
    with pytest.raises(Unauthorized):
        store.verify(added)
    new_bob = other.add("bob")
    assert store.verify(new_bob) != bob_id
    with pytest.raises(Unauthorized):
        store.verify(default + "x")
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "tokens.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


def test_token_files_from_before_ids_keep_their_names_as_ids(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    legacy = {"default": hashlib.sha256(b"d" * 40).hexdigest(), "carol": "0" * 64}
    (state / "tokens.json").write_text(json.dumps(legacy))
    store = TokenStore(state)
    assert store.ensure() is False
    # Sessions in the ledger are owned by "default" / "carol": they stay theirs.
    assert store.verify("d" * 40) == "default"
    dave = store.add("dave")
    written = json.loads((state / "tokens.json").read_text())
    assert written["default"] == {"id": "default", "sha256": legacy["default"]}
    assert written["carol"] == {"id": "carol", "sha256": "0" * 64}
    assert written["dave"]["id"] == store.verify(dave) != "dave"


def test_secret_is_masked_everywhere() -> None:
    value = "Ag1234567890secretvalue"
    secret = Secret(value)
    credential = Credential(access_token=secret)
    for text in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        repr(credential),
        str([secret]),
    ):
        assert value not in text
    assert secret.reveal() == value
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_log_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    value = "Ag9876543210anothersecret"
    secret = Secret(value)
    buffer = io.StringIO()
    configure_logging(level="debug", json=True, stream=buffer)
    log = structlog.get_logger("t")
    log.info(
        "leak attempt",
        access_token=value,
        note=f"token is {value}",
        nested={"refresh_token": "x", "ok": value},
    )
    log.info("secret object", thing=secret)
    try:
        raise RuntimeError(f"failed with {value}")
    except RuntimeError:
        log.exception("boom")
    # A third-party library logging a failure through the standard library.
    try:
        raise ValueError(f"sdk said {value}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    out = buffer.getvalue()
    assert value not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["access_token"] == "***"
    assert lines[0]["note"] == "token is ***"
    assert lines[0]["nested"] == {"refresh_token": "***", "ok": "***"}
    assert "RuntimeError" in lines[2]["exception"]
    assert lines[3]["logger"] == "uvicorn.error"
    assert "ValueError: sdk said ***" in lines[3]["exception"]
    secret.forget()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_local_collection_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RADICAL_ORBIT_GLOBUS_COLLECTION", raising=False)
    assert resolve_default_local_collection(None) is None
    settings = tmp_path / ".radical" / "orbit" / "globus.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"local_collection": "from-json"}))
    assert resolve_default_local_collection(None) == "from-json"
    gcp = tmp_path / ".globusonline" / "lta" / "client-id.txt"
    gcp.parent.mkdir(parents=True)
    gcp.write_text("from-gcp\n")
    assert resolve_default_local_collection(None) == "from-gcp"
    monkeypatch.setenv("RADICAL_ORBIT_GLOBUS_COLLECTION", "from-env")
    assert resolve_default_local_collection(None) == "from-env"
    assert resolve_default_local_collection("from-flag") == "from-flag"
    assert resolve_collection("local", session_local="mine", default="from-env") == "mine"
    assert resolve_collection("local", session_local=None, default="from-env") == "from-env"
    assert resolve_collection("abc", session_local="mine", default=None) == "abc"
    with pytest.raises(LocalCollectionUnknown):
        resolve_collection("local", session_local=None, default=None)


def test_session_ids_are_unguessable_and_never_look_like_options() -> None:
    sids = [new_sid() for _ in range(20_000)]
    assert len(set(sids)) == len(sids)
    # 32 hex digits = 128 random bits; a leading "-" would trip a CLI's argument parser.
    assert all(re.fullmatch(r"[0-9a-f]{32}", session_id) for session_id in sids)
    assert {session_id[0] for session_id in sids} == set("0123456789abcdef")


def test_credential_hash_reads_the_systemd_credential(tmp_path: Path) -> None:
    assert credential_hash({}) is None
    assert credential_hash({"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None  # not provisioned
    (tmp_path / "client-token").write_text("  " + "t" * 40 + "\n")
    digest = credential_hash({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert digest is not None and len(digest) == 64 and "t" * 40 not in digest
    store = TokenStore(tmp_path / "state", default_hash=digest)
    assert store.ensure() is False  # nothing generated
    assert store.verify("t" * 40) == "default"
    (tmp_path / "client-token").write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 characters") as refused:
        credential_hash({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert "short" not in str(refused.value)
