"""The dashboard served by the bridge, in a real browser: a real bridge, two real endpoint
daemons linked to it and the simulator. Sign-in by the link `orbit-globus ui` asks for, an
endpoint picked from the bridge's list, a transfer reaching SUCCEEDED live through the
relay (and only in its endpoint's view), cross-site requests refused, sign-out.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cross_site import assert_cross_site_refused
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from radical.orbit import BridgeClient, GlobusClient
from radical.orbit.bridge.app import Bridge, create_app
from radical.orbit.bridge.config import BridgeConfig, load_config
from radical.orbit.bridge.launcher import BridgeProcess
from radical.orbit.bridge.registry import Registry
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev deps)")
expect = sync_api.expect
C1, C2 = TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2
WAIT = 30_000 * UNIT  # Playwright counts milliseconds
ENDPOINTS = ("site-a", "site-b")
DAEMON_ENV = {"RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.5", "RADICAL_ORBIT_LOG_LEVEL": "warning"}


@dataclass
class Site:
    bridge: BridgeProcess
    token: str = ""
    endpoints: dict[str, DaemonProcess] = field(default_factory=dict)


@pytest.fixture(autouse=True)
def _expect_timeout() -> None:
    expect.set_options(timeout=WAIT)


@pytest.fixture(scope="module")
def site(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """As in tests/bridge: the endpoints dial out to the bridge, the browser talks to it."""
    result = Site(bridge=BridgeProcess(state_dir=tmp_path_factory.mktemp("bridge")))
    enrollments = {name: result.bridge.add_endpoint(name) for name in ENDPOINTS}
    result.token = result.bridge.add_client("alice")
    result.bridge.start()
    for name in ENDPOINTS:
        link = {
            "RADICAL_ORBIT_BRIDGE_URL": result.bridge.url,
            "RADICAL_ORBIT_BRIDGE_TOKEN": enrollments[name],
        }
        result.endpoints[name] = DaemonProcess(
            state_dir=tmp_path_factory.mktemp(name) / "state",
            env={**sim.environ(), **DAEMON_ENV, **link},
            poll_interval=0.2,
            name=name,
        )
    try:
        # Both at once: a daemon's start is mostly waiting for its interpreter to load.
        with ThreadPoolExecutor(len(ENDPOINTS)) as pool:
            for started in [pool.submit(d.start) for d in result.endpoints.values()]:
                started.result()
        _wait_online(result)
        yield result
    finally:
        for daemon in result.endpoints.values():
            if daemon.running:
                daemon.stop()
        result.bridge.stop()


def _wait_online(site: Site) -> None:
    deadline = time.monotonic() + 30 * UNIT
    while time.monotonic() < deadline:
        with BridgeClient(site.bridge.url, site.token) as client:
            if all(e["online"] for e in client.describe_endpoints()):
                return
        time.sleep(0.05)
    raise AssertionError("the endpoints did not link to the bridge")


@pytest.fixture
def bridge_client(site: Site) -> Iterator[BridgeClient]:
    with BridgeClient(site.bridge.url, site.token) as client:
        yield client


def _globus(client: BridgeClient, name: str, user: Credentials) -> GlobusClient:
    globus = client.get_endpoint_client(name).get_plugin("globus")
    globus.register_session(access_token=user.access_token)
    return globus


def _transfer(
    globus: GlobusClient, sim: Simulator, user: Credentials, *, size: int, label: str
) -> str:
    name = f"/~/{uuid.uuid4().hex[:8]}.bin"
    target = sim.local_path(C1, name, username=user.username)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(os.urandom(size))
    items = [{"source": name, "destination": name, "recursive": False}]
    return str(globus.submit_transfer(C1, C2, items, label=label)["task_id"])


def _sign_in(context: Any, site: Site, client: BridgeClient) -> Any:
    link = client.dashboard_link()  # what `orbit-globus ui` opens with RADICAL_ORBIT_URL there
    assert link.startswith(site.bridge.url + "/dashboard/signin?link="), link
    page = context.new_page()
    page.goto(link)
    expect(page.locator("#app")).to_be_visible()
    return page


def _row(page: Any, task_id: str) -> Any:
    return page.locator(f'#tasks tr[data-task-id="{task_id}"]')


def _cookie(context: Any, site: Site) -> dict[str, Any]:
    found = [c for c in context.cookies() if c["name"] == f"orbit_dashboard_{site.bridge.port}"]
    assert len(found) == 1, context.cookies()
    return dict(found[0])


def test_a_transfer_reaches_succeeded_live_on_the_endpoint_picked_on_the_bridge(
    context: Any,
    site: Site,
    sim: Simulator,
    user: Credentials,
    bridge_client: BridgeClient,
    shots: Path,
) -> None:
    page = _sign_in(context, site, bridge_client)
    # The nonce left the address; the browser holds a cookie, never the token.
    assert page.url == site.bridge.url + "/dashboard/"
    cookie = _cookie(context, site)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    stored = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert site.token not in stored and cookie["value"] not in stored
    page_csp = httpx.get(site.bridge.url + "/dashboard/", timeout=30 * UNIT).headers
    assert "script-src 'self'" in page_csp["content-security-policy"]
    # What an endpoint sends through the relay never runs in the bridge's origin.
    relayed = httpx.get(
        site.bridge.url + "/endpoints/site-a/dashboard/",
        headers={"Authorization": f"Bearer {site.token}"},
        timeout=30 * UNIT,
    )
    assert relayed.status_code == 200, relayed.text
    assert relayed.headers["content-security-policy"].startswith("default-src 'none'; sandbox")

    options = page.locator("#endpoint-pick option")
    expect(options).to_have_count(len(ENDPOINTS))
    assert options.evaluate_all("os => os.map(o => o.value)") == list(ENDPOINTS)
    page.select_option("#endpoint-pick", "site-b")
    expect(page.locator("#endpoint")).to_contain_text("site-b")
    expect(page.locator("#conn")).to_have_text("live")

    # Submitted while the page watches: it arrives through the relayed stream.
    on_b = _transfer(_globus(bridge_client, "site-b", user), sim, user, size=2_000_000, label="b")
    on_a = _transfer(_globus(bridge_client, "site-a", user), sim, user, size=10_000, label="a")
    expect(_row(page, on_b)).to_have_attribute("data-status", "SUCCEEDED")
    expect(page.locator(f'#activity li:has-text("{on_b[:8]}")').first).to_be_visible()
    assert _row(page, on_a).count() == 0, "site-a's task shown in site-b's view"
    page.screenshot(path=str(shots / "bridge.png"))

    page.select_option("#endpoint-pick", "site-a")
    expect(_row(page, on_a)).to_have_attribute("data-status", "SUCCEEDED")
    expect(_row(page, on_b)).to_have_count(0)
    # Each endpoint's own dashboard routes, relayed: its sessions, its health.
    page.click("#tab-sessions")
    expect(page.locator("#sessions tbody tr")).to_have_count(1)
    page.click("#tab-health")
    expect(page.locator("#health")).to_contain_text("site-a")


def test_on_the_bridge_cross_site_requests_are_refused_and_sign_out_ends_the_session(
    context: Any, site: Site, sim: Simulator, user: Credentials, bridge_client: BridgeClient
) -> None:
    page = _sign_in(context, site, bridge_client)
    # A second tab on the same browser session, following its endpoint's stream.
    other = context.new_page()
    other.goto(site.bridge.url + "/dashboard/")
    expect(other.locator("#conn")).to_have_text("live")
    globus = _globus(bridge_client, "site-a", user)
    task_id = _transfer(globus, sim, user, size=20_000_000, label="target")
    session_id = globus.session_id
    own = site.bridge.url
    cancel = f"{own}/endpoints/site-a/globus/sessions/{session_id}/tasks/{task_id}/cancel"
    cookie = _cookie(context, site)
    jar = {cookie["name"]: cookie["value"]}
    me = assert_cross_site_refused(context, page, cancel=cancel, own=own, jar=jar)
    assert me["bridge"] is True and me["name"] == "alice"
    kinds = [e["kind"] for e in globus.history(task_id=task_id, limit=1000)["events"]]
    assert "cancel_requested" not in kinds
    # A WebSocket with the cookie from another origin is refused too.
    ws_url = own.replace("http", "ws", 1) + "/endpoints/site-a/ws"
    with pytest.raises(InvalidStatus) as refusal:
        connect(
            ws_url,
            additional_headers={"Cookie": f"{cookie['name']}={cookie['value']}"},
            origin=Origin("http://evil.example"),
            open_timeout=30 * UNIT,
        )
    assert refusal.value.response.status_code == 403
    # The page's own request (own origin, its CSRF token) goes through the relay.
    answer = httpx.post(
        cancel, cookies=jar, headers={"Origin": own, me["csrf_header"]: me["csrf"]}, timeout=30
    )
    assert answer.status_code == 200, answer.text

    page.click("#logout")
    expect(page.locator("#signin")).to_be_visible()
    stale = httpx.get(own + "/endpoints", cookies=jar, timeout=30 * UNIT)
    assert stale.status_code == 401, stale.text
    # The bridge ends the other tab's relayed stream (1008): it shows the sign-in form.
    expect(other.locator("#signin")).to_be_visible()
    expect(other.locator("#signin-message")).to_contain_text("sign in again")


def test_the_bridge_dashboard_turns_off_and_its_cookie_with_it(tmp_path: Path) -> None:
    # Playwright's sync API keeps an event loop on this thread: the bridge app gets its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _turn_off(tmp_path)).result()


async def _turn_off(tmp_path: Path) -> None:
    env = {"RADICAL_ORBIT_BRIDGE_STATE_DIR": str(tmp_path)}
    on = load_config(env=env)
    off = load_config(env={**env, "RADICAL_ORBIT_BRIDGE_DASHBOARD": "false"})
    assert on.dashboard and not off.dashboard
    registry = Registry(tmp_path)
    bearer = {"Authorization": f"Bearer {registry.add_client('alice', ['*'])}"}

    def served(config: BridgeConfig, **options: Any) -> httpx.AsyncClient:
        app = create_app(Bridge(config, registry))
        transport = httpx.ASGITransport(app=app)
        return httpx.AsyncClient(transport=transport, base_url="http://bridge.test", **options)

    async with served(on) as client:
        link = await client.post("/dashboard/api/link", headers=bearer)
        assert link.status_code == 200, link.text
        await client.get(link.json()["url"])  # signs in: the client keeps the cookie
        assert (await client.get("/endpoints")).status_code == 200
        cookies = dict(client.cookies)
    assert cookies, "no session cookie"
    async with served(off, cookies=cookies) as client:
        assert (await client.get("/dashboard/")).status_code == 404
        assert (await client.post("/dashboard/api/link", headers=bearer)).status_code == 404
        assert (await client.get("/endpoints")).status_code == 401
