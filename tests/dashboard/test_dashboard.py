"""The dashboard in a real browser (headless chromium via Playwright), against the real daemon
and the simulator: sign-in without the token in the page, live tasks, trouble, resume without
gaps or duplicates across a reload and a daemon restart, labels shown as text, cross-site
requests refused, and a revoked token ending its browser session.

Each test writes a screenshot of what it checked into the ``shots`` folder.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cross_site import assert_cross_site_refused

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev deps)")
expect = sync_api.expect
C1, C2 = TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2
WAIT = 30_000 * UNIT  # Playwright counts milliseconds


@pytest.fixture(autouse=True)
def _expect_timeout() -> None:
    expect.set_options(timeout=WAIT)


def _file(sim: Simulator, user: Credentials, path: str, size: int) -> None:
    target = sim.local_path(C1, path, username=user.username)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(os.urandom(size))


@pytest.fixture
def transfer(globus: GlobusClient, sim: Simulator, user: Credentials) -> Callable[..., str]:
    """``transfer(size=..., label=...)``: the user sends a new file of ``size`` bytes; the
    task id."""

    def submit(*, size: int, label: str) -> str:
        name = f"/~/{uuid.uuid4().hex[:8]}.bin"
        _file(sim, user, name, size)
        items = [{"source": name, "destination": name, "recursive": False}]
        return str(globus.submit_transfer(C1, C2, items, label=label)["task_id"])

    return submit


def _link(daemon: DaemonProcess, token: str | None = None) -> str:
    answer = httpx.post(
        daemon.url + "/dashboard/api/link",
        headers={"Authorization": f"Bearer {token or daemon.token}"},
        timeout=30 * UNIT,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["url"])


def _sign_in(context: Any, daemon: DaemonProcess, token: str | None = None) -> Any:
    page = context.new_page()
    page.goto(_link(daemon, token))
    expect(page.locator("#app")).to_be_visible()
    return page


@pytest.fixture
def page(context: Any, daemon: DaemonProcess) -> Any:
    """A dashboard page signed in with the daemon's token."""
    return _sign_in(context, daemon)


def _row(page: Any, task_id: str) -> Any:
    return page.locator(f'#tasks tr[data-task-id="{task_id}"]')


def _activity_seqs(page: Any) -> list[int]:
    seqs = page.eval_on_selector_all("#activity li", "els => els.map(e => Number(e.dataset.seq))")
    return list(reversed(seqs))  # the list shows the newest first


def _ledger_seqs(daemon: DaemonProcess, after: int, upto: int) -> list[int]:
    answer = httpx.get(
        daemon.url + "/globus/history",
        params={"after": after, "limit": 1000},
        headers=daemon.headers,
        timeout=30 * UNIT,
    )
    assert answer.status_code == 200, answer.text
    return [e["seq"] for e in answer.json()["events"] if e["seq"] <= upto]


def _cookie(context: Any, daemon: DaemonProcess) -> dict[str, Any]:
    port = daemon.url.rsplit(":", 1)[1]
    found = [c for c in context.cookies() if c["name"] == f"orbit_dashboard_{port}"]
    assert len(found) == 1, context.cookies()
    return dict(found[0])


def test_one_time_link_signs_in_with_an_http_only_cookie_and_a_clean_url(
    browser: Any, context: Any, daemon: DaemonProcess, shots: Path
) -> None:
    url = _link(daemon)
    page = context.new_page()
    response = page.goto(url)
    expect(page.locator("#app")).to_be_visible()
    assert page.url.endswith("/dashboard/") and "link=" not in page.url
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    cookie = _cookie(context, daemon)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    stored = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert daemon.token not in stored and cookie["value"] not in stored
    page.screenshot(path=str(shots / "signed-in.png"))

    # The link works once: another browser opening it gets the sign-in form, and a clean URL.
    other = browser.new_context()
    try:
        again = other.new_page()
        again.goto(url)
        expect(again.locator("#signin")).to_be_visible()
        expect(again.locator("#signin-message")).to_contain_text("used or has expired")
        assert "link=" not in again.url and "signin=" not in again.url
        assert other.cookies() == []
    finally:
        other.close()

    # Signing out ends the session on the daemon, not only in this browser.
    page.locator("#logout").click()
    expect(page.locator("#signin")).to_be_visible()
    stale = httpx.get(
        daemon.url + "/globus/history",
        cookies={cookie["name"]: cookie["value"]},
        timeout=30 * UNIT,
    )
    assert stale.status_code == 401


def test_pasting_a_token_signs_in_and_forgets_it(context: Any, daemon: DaemonProcess) -> None:
    page = context.new_page()
    page.goto(daemon.url + "/dashboard/")
    expect(page.locator("#signin")).to_be_visible()
    page.locator("#token").fill("not-a-token")
    page.locator("#token").press("Enter")
    expect(page.locator("#signin-message")).to_contain_text("refused")
    page.locator("#token").fill(daemon.token)
    page.locator("#signin-form button").click()
    expect(page.locator("#app")).to_be_visible()
    assert page.locator("#token").input_value() == ""
    assert daemon.token not in page.evaluate("JSON.stringify([localStorage, sessionStorage])")


def test_a_transfer_appears_and_succeeds_live_and_every_view_shows_it(
    page: Any,
    transfer: Callable[..., str],
    globus: GlobusClient,
    shots: Path,
) -> None:
    label = f"live-{uuid.uuid4().hex[:6]}"
    task_id = transfer(size=2_000_000, label=label)
    row = _row(page, task_id)
    expect(row).to_be_visible()
    expect(row.locator("td.label")).to_have_text(label)
    expect(row).to_have_attribute("data-status", "SUCCEEDED")
    expect(row.locator("td").nth(5)).to_have_text("2.00 MB")
    page.screenshot(path=str(shots / "live.png"))

    page.locator("#tab-history").click()
    page.locator("#h-label").fill(label)
    page.locator("#h-status").select_option("SUCCEEDED")
    page.locator("#history-form button").click()
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history tbody tr td").first).to_have_text(label)
    page.screenshot(path=str(shots / "history.png"))

    page.locator("#tab-sessions").click()
    session_row = page.locator(f'#sessions tr[data-session-id="{globus.session_id}"]')
    expect(session_row.locator("td").nth(1)).to_have_text("valid")
    page.screenshot(path=str(shots / "sessions.png"))

    # The tabs work from the keyboard: arrow keys move between them.
    page.locator("#tab-sessions").press("ArrowRight")
    expect(page.locator("#tab-health")).to_be_focused()
    expect(page.locator("#health")).to_contain_text("Ledger head")
    page.screenshot(path=str(shots / "health.png"))


def test_a_task_in_trouble_shows_its_badge_reason_and_timeline_and_cancels_from_the_ui(
    page: Any,
    transfer: Callable[..., str],
    daemon: DaemonProcess,
    sim: Simulator,
    globus: GlobusClient,
    shots: Path,
) -> None:
    items = [{"source": "/~/missing.txt", "destination": "/~/missing.txt", "recursive": False}]
    missing = str(globus.submit_transfer(C1, C2, items, label="doomed")["task_id"])
    row = _row(page, missing)
    expect(row.locator(".badge.attention")).to_contain_text("needs attention: erroring")
    expect(row.locator(".hint")).to_contain_text("FILE_NOT_FOUND")

    paused = transfer(size=50_000_000, label="paused")
    expect(_row(page, paused)).to_have_attribute("data-status", "ACTIVE")
    assert sim.pause_task(paused, message="storage maintenance until 17:00")
    expect(_row(page, paused).locator(".hint")).to_have_text(
        "paused: storage maintenance until 17:00"
    )
    page.locator("#f-attention").check()
    expect(page.locator("#tasks tbody tr:visible")).to_have_count(2)
    page.screenshot(path=str(shots / "trouble.png"))
    page.locator("#f-attention").uncheck()
    page.screenshot(path=str(shots / "overview.png"))

    row.locator(".timeline-btn").click()
    expect(page.locator("#timeline-ledger")).to_contain_text("task_needs_attention")
    expect(page.locator("#timeline-globus")).to_contain_text("FILE_NOT_FOUND")
    page.screenshot(path=str(shots / "timeline.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#timeline")).to_be_hidden()

    # Cancel from the UI goes through the daemon's durable cancel route.
    page.on("dialog", lambda dialog: dialog.accept())
    for task_id in (missing, paused):
        _row(page, task_id).locator(".cancel-btn").click()
        expect(_row(page, task_id)).to_have_attribute("data-status", "FAILED")
        kinds = [e["kind"] for e in globus.history(task_id=task_id, limit=1000)["events"]]
        assert "cancel_requested" in kinds


def test_a_label_carrying_html_is_shown_as_text(
    page: Any,
    transfer: Callable[..., str],
) -> None:
    label = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>b</b>'
    task_id = transfer(size=1000, label=label)
    row = _row(page, task_id)
    expect(row.locator("td.label")).to_have_text(label)
    expect(row).to_have_attribute("data-status", "SUCCEEDED")
    assert row.locator("td.label img, td.label b, td.label script").count() == 0
    expect(page.locator("#activity")).to_contain_text(label)
    page.locator("#tab-history").click()
    page.locator("#h-label").fill(label)
    page.locator("#history-form button").click()
    expect(page.locator("#history tbody td").first).to_have_text(label)
    assert page.evaluate("window.pwned") is None


def test_reload_and_daemon_restart_lose_nothing_and_duplicate_nothing(
    page: Any,
    transfer: Callable[..., str],
    daemon: DaemonProcess,
    user: Credentials,
    globus: GlobusClient,
) -> None:
    first = transfer(size=1000, label="before-reload")
    expect(_row(page, first)).to_have_attribute("data-status", "SUCCEEDED")

    cursor = _activity_seqs(page)[-1]  # the page's cursor: the last event it applied
    page.reload()
    expect(page.locator("#app")).to_be_visible()
    second = transfer(size=1000, label="after-reload")
    expect(_row(page, second)).to_have_attribute("data-status", "SUCCEEDED")
    # The snapshot holds the first task once, its final state.
    expect(_row(page, first)).to_have_attribute("data-status", "SUCCEEDED")
    seqs = _activity_seqs(page)
    assert seqs == _ledger_seqs(daemon, cursor, seqs[-1]), "a gap or a duplicate after reload"

    # A transfer that finishes while the daemon is down: the restarted daemon's catch-up
    # records it and the page resumes from its cursor.
    before = seqs[-1]
    third = transfer(size=3_000_000, label="across-restart")
    expect(_row(page, third)).to_be_visible()
    daemon.restart()
    expect(page.locator("#conn")).to_have_text("live")
    # The daemon keeps no Globus credential across a restart: hand it over again.
    globus.register_session(access_token=user.access_token, session_id=globus.session_id)
    expect(_row(page, third)).to_have_attribute("data-status", "SUCCEEDED")
    expect(page.locator("#conn")).to_have_text("live")
    seqs = _activity_seqs(page)
    assert len(seqs) == len(set(seqs)), "duplicates after the restart"
    assert [s for s in seqs if s > before] == _ledger_seqs(daemon, before, seqs[-1])


def test_a_cross_site_post_is_refused(
    context: Any,
    page: Any,
    transfer: Callable[..., str],
    daemon: DaemonProcess,
    globus: GlobusClient,
) -> None:
    task_id = transfer(size=50_000_000, label="target")
    expect(_row(page, task_id)).to_have_attribute("data-status", "ACTIVE")
    cancel = f"{daemon.url}/globus/sessions/{globus.session_id}/tasks/{task_id}/cancel"
    cookie = _cookie(context, daemon)
    jar = {cookie["name"]: cookie["value"]}
    own = daemon.url
    me = assert_cross_site_refused(context, page, cancel=cancel, own=own, jar=jar)
    kinds = [e["kind"] for e in globus.history(task_id=task_id, limit=1000)["events"]]
    assert "cancel_requested" not in kinds
    # The same request from the dashboard's own origin with its token is accepted.
    answer = httpx.post(
        cancel, cookies=jar, headers={"Origin": own, me["csrf_header"]: me["csrf"]}, timeout=30
    )
    assert answer.status_code == 200, answer.text


def test_a_revoked_tokens_browser_session_ends(context: Any, daemon: DaemonProcess) -> None:
    name = f"viewer{uuid.uuid4().hex[:6]}"
    token = daemon.add_token(name)
    page = _sign_in(context, daemon, token)
    expect(page.locator("#who")).to_have_text(f"signed in as {name}")
    cookie = _cookie(context, daemon)
    # What `orbit-globus-endpoint token delete` does: the entry leaves tokens.json.
    path = daemon.state_dir / "tokens.json"
    tokens = json.loads(path.read_text())
    del tokens[name]
    path.write_text(json.dumps(tokens))
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-message")).to_contain_text("revoked")
    stale = httpx.get(
        daemon.url + "/globus/history",
        cookies={cookie["name"]: cookie["value"]},
        timeout=30 * UNIT,
    )
    assert stale.status_code == 401
