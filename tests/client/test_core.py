"""The pure core: route building and answer decoding, without any daemon."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit import errors
from radical.orbit.client import calls
from radical.orbit.client.render import ProgressBoard, human_bytes, table


@given(task_id=st.text(min_size=1, max_size=40))
def test_path_segments_cannot_escape_their_route(task_id: str) -> None:
    call = calls.get_task("session_id", task_id)
    prefix = "/globus/sessions/session_id/tasks/"
    assert call.path.startswith(prefix)
    segment = call.path[len(prefix) :]
    assert "/" not in segment
    assert segment not in (".", "..")


@given(status=st.integers(min_value=400, max_value=599), code=st.text(max_size=20))
def test_every_error_status_becomes_a_request_error_with_its_fields(status: int, code: str) -> None:
    body = f'{{"error": {code!r}, "message": "fix it"}}'.replace("'", '"').encode()
    call = calls.list_endpoints()
    with pytest.raises(errors.RequestError) as info:
        calls.decode_answer(call, status, body)
    assert info.value.status == status
    assert isinstance(info.value, errors.OrbitError)
    if status == 404:
        assert isinstance(info.value, errors.NotFoundError)
    if status in (400, 422):
        assert isinstance(info.value, errors.BadRequestError)


def test_error_documents_map_to_named_classes() -> None:
    consent = errors.error_from_response(
        401,
        {"error": "ConsentRequired", "message": "Missing consent", "required_scopes": ["s:a"]},
    )
    assert isinstance(consent, errors.ConsentRequiredError)
    assert consent.required_scopes == ["s:a"]
    assert "consent to these scopes" in str(consent) and "s:a" in str(consent)
    pending = errors.error_from_response(
        503, {"error": "SubmitPending", "message": "m", "submission_id": "x"}
    )
    assert isinstance(pending, errors.SubmitPendingError) and pending.submission_id == "x"
    limited = errors.error_from_response(
        429, {"error": "RateLimited"}, headers={"retry-after": "3"}
    )
    assert isinstance(limited, errors.RateLimitedError) and limited.retry_after == 3.0
    validation = errors.error_from_response(
        422, {"detail": [{"loc": ["body", "items"], "msg": "field required"}]}
    )
    assert validation.message == "items: field required"
    assert isinstance(errors.error_from_response(502, None), errors.GlobusError)


def test_non_json_success_is_a_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError, match="not JSON"):
        calls.decode_answer(calls.list_endpoints(), 200, b"<html>")
    assert calls.decode_answer(calls.list_endpoints(), 204, b"") == {}


def _history(**given: Any) -> calls.Call:
    """``calls.history`` with every filter unset but those given, as events."""
    unset = ("session_id", "task_id", "status", "label", "since", "until", "after", "limit")
    options: dict[str, Any] = {**dict.fromkeys(unset), "view": "events", **given}
    return calls.history(**options)


def test_history_times_and_websocket_urls() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    call = _history(task_id="t", since=moment, until="2026-01-02T03:04:06", limit=5)
    assert call.params == {
        "task_id": "t",
        "since": moment.timestamp(),
        "until": moment.timestamp() + 1,
        "limit": 5,
        "view": "events",
    }
    with pytest.raises(errors.ArgumentError):
        _history(since="yesterday")
    url = calls.websocket_url("https://h:1/", since=5, session_id="s", task_id=None, topic=None)
    assert url == "wss://h:1/ws?since=5&session_id=s"
    assert (
        calls.websocket_url("http://h:1", since=None, session_id=None, task_id=None, topic=None)
        == "ws://h:1/ws"
    )


def test_calls_refuse_unusable_arguments() -> None:
    with pytest.raises(errors.NoSessionError, match="register_session"):
        calls.get_task(None, "t")
    with pytest.raises(errors.ArgumentError, match="list of"):
        calls.submit_transfer(
            "s",
            source="a",
            destination="b",
            items={"source": "x"},  # type: ignore[dict-item]
            label=None,
            sync_level=None,
            options={},
        )
    assert calls.delete("s", collection="c", paths="/one", recursive=False, label=None).body == {
        "collection": "c",
        "paths": ["/one"],
        "recursive": False,
    }


def test_rendering_helpers() -> None:
    assert human_bytes(999) == "999 B" and human_bytes(1500) == "1.5 kB"
    text = table([{"a": 1, "b": None}], [("a", "A"), ("b", "Bee")])
    assert text.splitlines() == ["A | Bee", "--+----", "1 | -"]
    board = ProgressBoard(width=10)
    event = {
        "topic": "transfer_status",
        "data": {
            "task_id": "abcdef123",
            "status": "ACTIVE",
            "bytes_transferred": 10,
            "files_transferred": 1,
            "bytes_total": 20,
        },
    }
    task = board.apply(event)
    assert task is not None and "[#####.....]" in board.line(task)
    assert board.apply({"topic": "session", "data": {}}) is None
    assert not board.all_done()
