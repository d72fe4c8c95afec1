"""Browser sessions of the dashboard without a browser: the sign-in core (one-time links,
sessions bound to a token, CSRF and same-origin checks), the routes over real HTTP, the
`dashboard = false` switch and `orbit-globus ui`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from daemon_helpers import start_daemon

from radical.orbit.client import cli
from radical.orbit.daemon.api.auth import TokenStore
from radical.orbit.daemon.api.browser import BrowserSessions, check_same_origin
from radical.orbit.daemon.errors import Forbidden, Unauthorized
from radical.orbit.daemon.runtime.config import load_config
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    store = TokenStore(tmp_path)
    store.ensure()
    return store


def test_a_link_signs_in_once_for_its_tokens_identity(tmp_path: Path, tokens: TokenStore) -> None:
    token = tokens.add("alice")
    sessions = BrowserSessions(tmp_path, tokens)
    nonce = sessions.make_link(token)
    cookie, session = sessions.redeem_link(nonce)
    assert session.owner == tokens.verify(token)  # the token's id, not its reusable name
    assert tokens.name_of(session.owner) == "alice"
    assert token not in cookie and token not in (tmp_path / "browser_sessions.json").read_text()
    with pytest.raises(Unauthorized, match="used or expired"):
        sessions.redeem_link(nonce)
    with pytest.raises(Unauthorized):
        sessions.make_link("not-a-token")
    # Sessions outlive the daemon: a new instance reads them back.
    again = BrowserSessions(tmp_path, tokens)
    assert again.session(cookie).owner == session.owner
    again.sign_out(cookie)
    with pytest.raises(Unauthorized):
        BrowserSessions(tmp_path, tokens).session(cookie)


def test_deleting_the_token_ends_its_browser_sessions(tmp_path: Path, tokens: TokenStore) -> None:
    token = tokens.add("bob")
    sessions = BrowserSessions(tmp_path, tokens)
    cookie, _ = sessions.sign_in(token)
    data = json.loads(tokens.hashes_path.read_text())
    del data["bob"]
    tokens.hashes_path.write_text(json.dumps(data))
    with pytest.raises(Unauthorized, match="revoked"):
        sessions.session(cookie)


def test_state_changes_need_the_same_origin_and_the_csrf_token(
    tmp_path: Path, tokens: TokenStore
) -> None:
    sessions = BrowserSessions(tmp_path, tokens)
    cookie, session = sessions.sign_in((tmp_path / "token").read_text().strip())
    good = {"origin": ORIGIN, "x-orbit-csrf": session.csrf}
    assert sessions.authorize(cookie, method="POST", headers=good, own_origin=ORIGIN) == "default"
    assert sessions.authorize(cookie, method="GET", headers={}, own_origin=ORIGIN) == "default"
    for headers in (
        {"origin": "http://evil.example", "x-orbit-csrf": session.csrf},
        {**good, "sec-fetch-site": "same-site"},
        {"origin": ORIGIN},
        {"origin": ORIGIN, "x-orbit-csrf": session.csrf + "x"},
    ):
        with pytest.raises(Forbidden):
            sessions.authorize(cookie, method="DELETE", headers=headers, own_origin=ORIGIN)
    check_same_origin({"sec-fetch-site": "none"}, own_origin=ORIGIN)  # typed or opened by a tool


def test_the_dashboard_setting_is_a_boolean() -> None:
    assert load_config(env={"RADICAL_ORBIT_DASHBOARD": "false"}).dashboard is False
    assert load_config(env={}).dashboard is True
    with pytest.raises(ValueError, match="dashboard"):
        load_config(env={"RADICAL_ORBIT_DASHBOARD": "maybe"})


def test_ui_prints_a_one_time_link_and_the_routes_accept_its_cookie(
    shared_daemon: DaemonProcess,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--url", shared_daemon.url, "--token", shared_daemon.token, "ui", "--no-browser"]
    assert cli.main(argv, out=out, err=err) == 0, err.getvalue()
    url = out.getvalue().split("dashboard: ", 1)[1].strip()
    assert url.startswith(shared_daemon.url + "/dashboard/signin?link=")
    with httpx.Client(timeout=30 * UNIT) as http:
        first = http.get(url)
        assert first.status_code == 303 and first.headers["location"] == "/dashboard/"
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        me = http.get(shared_daemon.url + "/dashboard/api/me")
        assert me.status_code == 200 and me.json()["owner"] == "default"
        assert http.get(shared_daemon.url + "/globus/history").status_code == 200
        page = http.get(shared_daemon.url + "/dashboard/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script anywhere
    with httpx.Client(timeout=30 * UNIT) as other:
        again = other.get(url)
        assert again.headers["location"] == "/dashboard/?signin=expired"
        assert "set-cookie" not in again.headers


def test_dashboard_false_turns_it_off(tmp_path: Path, sim: Simulator) -> None:
    process = start_daemon(tmp_path, sim, env={"RADICAL_ORBIT_DASHBOARD": "false"})
    try:
        with httpx.Client(base_url=process.url, timeout=30 * UNIT) as http:
            assert http.get("/dashboard/").status_code == 404
            answer = http.post("/dashboard/api/link", headers=process.headers)
            assert answer.status_code == 404
    finally:
        process.stop()
