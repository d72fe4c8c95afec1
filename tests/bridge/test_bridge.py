"""One bridge, three endpoint daemons and the simulator: the client API through the bridge.

Order matters only at the end: the tests that kill the bridge or an endpoint run last, and
each leaves every process running again.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from bridge_helpers import (
    DST,
    ENDPOINTS,
    ISSUED,
    SRC,
    UNIT,
    Site,
    godata_items,
    online,
    wait_until,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from radical.orbit import BridgeClient, GlobusClient
from radical.orbit.bridge import frames
from radical.orbit.client.cli import main as cli_main
from radical.orbit.client.errors import (
    DaemonUnavailable,
    GlobusError,
    NotFoundError,
    OrbitError,
    RequestError,
    SubmitPendingError,
    TaskWaitTimeout,
)
from radical.orbit.client.stream import StreamClosed
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials

pytestmark = pytest.mark.timeout(240)

BIG = [{"source": "/home/share/big/one_megabyte.bin", "destination": "/~/big.bin"}]


def _globus(site: Site, endpoint: str, who: str, user: Credentials) -> GlobusClient:
    bc = BridgeClient(site.bridge.url, site.tokens[who])
    globus = bc.get_endpoint_client(endpoint).get_plugin("globus")
    globus.register_session(access_token=user.access_token, local_collection=DST)
    return globus


class _Collector:
    """A subscription through the bridge from seq 0 that records every event it delivers."""

    def __init__(self, globus: GlobusClient) -> None:
        self.globus = globus
        self.received: list[int] = []
        self.lock = threading.Lock()
        self.subscription = globus.subscribe(self._add, since=0)

    def _add(self, event: dict[str, object]) -> None:
        with self.lock:
            self.received.append(int(str(event["seq"])))

    def caught_up(self) -> bool:
        truth = [e["seq"] for e in self.globus.iter_history(session_id=self.globus.session_id)]
        with self.lock:
            seqs = list(self.received)
        # Never a duplicate or a reordering, at any moment.
        assert seqs == sorted(set(seqs)), "the stream through the bridge repeated an event"
        return seqs == truth

    def assert_matches_ledger(self) -> None:
        """Every event the ledger holds for the session, exactly once, in order: no gap."""
        wait_until(self.caught_up, what="the stream through the bridge to match the ledger")
        self.subscription.stop()


def test_list_endpoints_describes_every_enrolled_endpoint(site: Site) -> None:
    with BridgeClient(site.bridge.url, site.tokens["alice"]) as bc:
        assert bc.list_endpoints() == list(ENDPOINTS)
        for doc in bc.describe_endpoints():
            assert doc["online"] is True
            assert doc["plugins"] == ["globus"]
            assert doc["path"] == f"/endpoints/{doc['name']}"
            assert "local_collection" in doc
    # A token allowed one endpoint sees that one only, and cannot reach the others.
    with BridgeClient(site.bridge.url, site.tokens["carol"]) as bc:
        assert bc.list_endpoints() == ["site-a"]
        with pytest.raises(NotFoundError):
            bc.get_endpoint_client("site-b")
    answer = httpx.get(
        f"{site.bridge.url}/endpoints/site-b/globus/history",
        headers={"Authorization": f"Bearer {site.tokens['carol']}"},
    )
    assert answer.status_code == 404
    assert answer.json()["error"] == "EndpointNotFound"
    assert httpx.get(site.bridge.url + "/endpoints").status_code == 401


def test_seed_snippet_runs_unchanged_through_the_bridge(
    site: Site,
    sim: Simulator,
    user: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RADICAL_ORBIT_URL", site.bridge.url)
    monkeypatch.setenv("RADICAL_ORBIT_TOKEN", site.tokens["alice"])
    monkeypatch.setenv("RADICAL_ORBIT_STATE_DIR", "/nonexistent/orbit")
    data_in = sim.local_path(SRC, "/data/in/")
    data_in.mkdir(parents=True, exist_ok=True)
    (data_in / "a.txt").write_text("alpha\n")
    # fmt: off
    from radical.orbit import BridgeClient
    bc = BridgeClient()
    ec = bc.get_endpoint_client(bc.list_endpoints()[0])
    globus = ec.get_plugin('globus')
    globus.register_session(access_token=user.access_token, local_collection=DST)
    sub = globus.submit_transfer(source=SRC, destination='local',
              items=[{'source': '/data/in/', 'destination': '/~/out/', 'recursive': True}],
              label='my transfer', sync_level='checksum')
    globus.task_wait(sub['task_id'], timeout=60)
    print(globus.get_task(sub['task_id'])['status'])
    # fmt: on
    printed = [line for line in capsys.readouterr().out.splitlines() if "[" not in line]
    assert printed == ["SUCCEEDED"]
    assert bc.list_endpoints() == list(ENDPOINTS)
    out = sim.local_path(DST, "/~/out/", username=user.username)
    assert (out / "a.txt").read_text() == "alpha\n"
    bc.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_seed_method_through_the_bridge(
    site: Site, sim: Simulator, user: Credentials, endpoint: str
) -> None:
    globus = _globus(site, endpoint, "alice", user)
    session_id = globus.session_id
    assert globus.mkdir("local", "/~/work/")["code"] == "DirectoryCreated"
    sub = globus.submit_transfer(SRC, "local", godata_items("/~/work/in/"), label=f"m-{endpoint}")
    assert set(sub) >= {"task_id", "submission_id", "status"}
    assert globus.task_wait(sub["task_id"], timeout=30)["status"] == "SUCCEEDED"
    assert globus.get_task(sub["task_id"])["label"] == f"m-{endpoint}"
    assert [t["task_id"] for t in globus.list_tasks()] == [sub["task_id"]]
    renamed = globus.rename("local", "/~/work/in/file1.txt", "/~/work/in/first.txt")
    assert renamed["code"] == "FileRenamed"
    listing = globus.ls("local", "/~/work/in/")
    assert sorted(e["name"] for e in listing["DATA"]) == ["file2.txt", "file3.txt", "first.txt"]
    assert {SRC, DST} <= {ep["id"] for ep in globus.endpoint_search("Tutorial")}
    assert globus.get_endpoint(SRC)["id"] == SRC
    slow = globus.submit_transfer(SRC, "local", BIG, label="to-cancel")
    globus.cancel_task(slow["task_id"])
    assert globus.task_wait(slow["task_id"], timeout=30)["status"] == "FAILED"
    gone = globus.delete("local", ["/~/work/in/"], recursive=True)
    assert globus.task_wait(gone["task_id"], timeout=30)["status"] == "SUCCEEDED"
    assert not sim.local_path(DST, "/~/work/in/", username=user.username).exists()
    rows = globus.history(view="tasks", session_id=session_id)["tasks"]
    assert {r["task_id"] for r in rows} == {sub["task_id"], slow["task_id"], gone["task_id"]}
    # The stream replays the ledger from 0, in seq order, then ends when asked.
    kinds = []
    stream = globus.events(since=0)
    for event in stream:
        kinds.append(event["kind"])
        if event["kind"] == "task_state_changed" and event["task_id"] == gone["task_id"]:
            break
    stream.close()
    assert kinds[0] == "session_opened"
    assert "task_submitted" in kinds and "cancel_requested" in kinds
    # Errors come through as the daemon answers them.
    with pytest.raises(NotFoundError) as missing:
        globus.get_task("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404
    globus.unregister_session()
    globus.close()


def test_cli_takes_endpoint_through_the_bridge(
    site: Site, user: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADICAL_ORBIT_URL", site.bridge.url)
    monkeypatch.setenv("RADICAL_ORBIT_TOKEN", site.tokens["alice"])
    monkeypatch.setenv("GLOBUS_ACCESS_TOKEN", user.access_token)
    for name in ("RADICAL_ORBIT_SESSION", "GLOBUS_REFRESH_TOKEN", "GLOBUS_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli_main(list(argv), out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    code, out = run("endpoints")
    assert code == 0
    assert [c.strip() for c in out.splitlines()[0].split(" | ")[:2]] == ["Name", "Online"]
    code, out = run("--format", "json", "endpoints")
    assert code == 0
    assert [e["name"] for e in json.loads(out)["endpoints"]] == list(ENDPOINTS)
    code, out = run("--endpoint", "site-b", "session", "register", "--local-collection", DST)
    assert code == 0, out
    session_id = out.split("RADICAL_ORBIT_SESSION=")[1].strip()
    code, out = run(
        "--endpoint", "site-b", f"--session={session_id}", "--format", "json", "task", "list"
    )
    assert code == 0, out
    # The session lives on site-b only.
    code, out = run("--endpoint", "site-a", f"--session={session_id}", "task", "list")
    assert code != 0, out


def test_many_requests_in_flight_each_with_its_own_timeout(site: Site, user: Credentials) -> None:
    clients = {name: _globus(site, name, "alice", user) for name in ENDPOINTS}
    subs = {
        name: c.submit_transfer(SRC, "local", godata_items("/~/many/"))
        for name, c in clients.items()
    }
    slow = clients["site-a"].submit_transfer(SRC, "local", BIG)
    started = time.monotonic()
    # A wait held open on site-a must not delay anything else on the same link.
    with ThreadPoolExecutor(max_workers=16) as pool:
        # use_stream=False: the daemon's wait route holds the request open on the link.
        waiting = pool.submit(
            clients["site-a"].task_wait, slow["task_id"], timeout=2, use_stream=False
        )
        gets = [
            pool.submit(clients[name].get_task, subs[name]["task_id"])
            for name in ENDPOINTS
            for _ in range(20)
        ]
        answers = [f.result(timeout=30 * UNIT) for f in gets]
        quick = time.monotonic() - started
        with pytest.raises(TaskWaitTimeout):
            waiting.result(timeout=30 * UNIT)
    assert len(answers) == 60
    assert quick < 2 * UNIT + 5
    clients["site-a"].cancel_task(slow["task_id"])
    for c in clients.values():
        c.close()


def test_two_bridge_clients_cannot_see_each_other(
    site: Site, sim: Simulator, user: Credentials
) -> None:
    alice = _globus(site, "site-a", "alice", user)
    sub = alice.submit_transfer(SRC, "local", godata_items("/~/iso/"), label="alice-only")
    alice.task_wait(sub["task_id"], timeout=30)
    bob_user = sim.add_user(f"bob{int(time.time() * 1000) % 10**8}")
    bob = _globus(site, "site-a", "bob", bob_user)
    with BridgeClient(site.bridge.url, site.tokens["bob"]) as bc:
        spy = bc.get_endpoint_client("site-a").get_plugin("globus", session_id=alice.session_id)
        with pytest.raises(NotFoundError):
            spy.get_task(sub["task_id"])
        with pytest.raises(NotFoundError):
            spy.list_tasks()
        assert bob.history(label="alice-only")["events"] == []
        assert bob.history(view="tasks")["tasks"] == []
        with pytest.raises(StreamClosed, match="4404") as refused, spy.events(since=0) as stream:
            stream.get()
        assert refused.value.fatal
    mine = alice.history(view="tasks", session_id=alice.session_id)["tasks"]
    assert {e["task_id"] for e in mine} == {sub["task_id"]}
    alice.close()
    bob.close()


def test_offline_endpoint_answers_503_then_works_again(site: Site, user: Credentials) -> None:
    globus = _globus(site, "site-c", "alice", user)
    stream = _Collector(globus)  # lives across the endpoint's restart and reconnect
    before = globus.submit_transfer(SRC, "local", godata_items("/~/off1/"))
    globus.task_wait(before["task_id"], timeout=30)
    daemon = site.endpoints["site-c"]
    daemon.stop()
    wait_until(lambda: not online(site.bridge.url, site.tokens["alice"])["site-c"], what="offline")
    started = time.monotonic()
    with pytest.raises(GlobusError) as offline:
        globus.list_tasks()
    assert time.monotonic() - started < 2 * UNIT
    assert offline.value.status == 503
    assert offline.value.code == "EndpointOffline"
    assert "site-c" in offline.value.message
    raw = httpx.get(
        f"{site.bridge.url}/endpoints/site-c/globus/history",
        headers={"Authorization": f"Bearer {site.tokens['alice']}"},
    )
    assert (raw.status_code, raw.headers["retry-after"]) == (503, "5")
    daemon.start()
    wait_until(site.all_online, what="site-c back")
    # The daemon restarted and lost the credential; the client hands it over again.
    assert [t["task_id"] for t in globus.list_tasks()] == [before["task_id"]]
    after = globus.submit_transfer(SRC, "local", godata_items("/~/off2/"))
    globus.task_wait(after["task_id"], timeout=30)
    stream.assert_matches_ledger()
    globus.close()


def test_bridge_killed_mid_stream_loses_and_repeats_nothing(site: Site, user: Credentials) -> None:
    globus = _globus(site, "site-b", "alice", user)
    stream = _Collector(globus)
    first = [globus.submit_transfer(SRC, "local", godata_items(f"/~/k{i}/")) for i in range(3)]
    site.bridge.kill()
    time.sleep(0.5 * UNIT)
    site.bridge.start()
    wait_until(site.all_online, what="endpoints back on the new bridge")
    second = [globus.submit_transfer(SRC, "local", godata_items(f"/~/l{i}/")) for i in range(3)]
    for sub in (*first, *second):
        globus.task_wait(sub["task_id"], timeout=30)
    stream.assert_matches_ledger()
    globus.close()


def test_a_client_reconnecting_with_its_cursor_resumes_through_the_bridge(
    site: Site, user: Credentials, tmp_path: Path
) -> None:
    globus = _globus(site, "site-a", "alice", user)
    sub = globus.submit_transfer(SRC, "local", godata_items("/~/cursor/"))
    globus.task_wait(sub["task_id"], timeout=30)
    truth = [e["seq"] for e in globus.iter_history(session_id=globus.session_id)]
    cursor = str(tmp_path / "cursor.json")
    seen = []
    with globus.events(since=0, cursor_file=cursor) as stream:
        seen += [stream.get()["seq"], stream.get()["seq"]]
    # A new process would do the same: a new client, the saved cursor, the rest exactly once.
    with BridgeClient(site.bridge.url, site.tokens["alice"]) as bc:
        again = bc.get_endpoint_client("site-a").get_plugin("globus", session_id=globus.session_id)
        with again.events(cursor_file=cursor) as stream:
            seen += [stream.get()["seq"] for _ in truth[2:]]
    assert seen == truth
    globus.close()


def test_endpoint_killed_mid_submit_runs_each_submission_once(
    site: Site, sim: Simulator, user: Credentials
) -> None:
    stop = threading.Event()
    acked: list[str] = []
    attempted: list[str] = []
    refused: list[str] = []

    def produce(index: int) -> None:
        with BridgeClient(site.bridge.url, site.tokens["alice"], timeout=15) as bc:
            globus = bc.get_endpoint_client("site-a").get_plugin("globus")
            globus.register_session(access_token=user.access_token, local_collection=DST)
            n = 0
            while not stop.is_set():
                label = f"x{index}-{n}"
                n += 1
                attempted.append(label)
                item = {"source": "/home/share/godata/file1.txt", "destination": f"/~/x/{label}"}
                try:
                    globus.submit_transfer(SRC, "local", [item], label=label)
                except SubmitPendingError:
                    acked.append(label)
                except (RequestError, DaemonUnavailable, OrbitError):
                    refused.append(label)
                    stop.wait(0.05)
                else:
                    acked.append(label)

    producers = [threading.Thread(target=produce, args=(i,)) for i in range(3)]
    for p in producers:
        p.start()
    wait_until(lambda: len(acked) >= 10, what="submits flowing")
    site.endpoints["site-a"].kill()
    site.endpoints["site-a"].start()
    wait_until(site.all_online, what="site-a back")
    count = len(acked)
    wait_until(lambda: len(acked) >= count + 10, what="submits flowing again")
    stop.set()
    for p in producers:
        p.join(30)
    mine = set(attempted)

    def settled() -> bool:
        labels = {d["label"] for d in sim.tasks() if d["label"] in mine}
        return set(acked) <= labels

    wait_until(settled, within=30, what="every acknowledged submit at Globus")
    labels = Counter(str(d["label"]) for d in sim.tasks() if d["label"] in mine)
    assert refused, "no submit met the dead endpoint: the kill missed the load"
    assert [label for label, n in labels.items() if n > 1] == []
    assert set(acked) <= set(labels)


def test_bridge_stores_and_logs_no_credential(site: Site, sim: Simulator) -> None:
    secrets = (
        [u.access_token for u in ISSUED]
        + list(site.tokens.values())
        + list(site.enrollments.values())
    )
    for path in site.bridge.state_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for secret in secrets:
                assert secret[:16] not in text, f"{path.name} holds a credential"


def test_link_needs_its_enrollment_token_and_a_newer_link_replaces_the_older(
    site: Site,
) -> None:
    link_url = "ws" + site.bridge.url.removeprefix("http") + "/link"
    with pytest.raises(InvalidStatus) as refused:
        connect(link_url, additional_headers={"Authorization": "Bearer nope"}, proxy=None)
    assert refused.value.response.status_code == 401
    enrollment = site.bridge.add_endpoint("spare")
    hello = frames.encode(frames.Hello(endpoint={"plugins": ["globus"], "version": "x"}))
    auth = {"Authorization": f"Bearer {enrollment}"}
    try:
        with connect(link_url, additional_headers=auth, proxy=None) as first:
            first.send(hello)
            wait_until(lambda: online(site.bridge.url, site.tokens["alice"])["spare"], what="up")
            with connect(link_url, additional_headers=auth, proxy=None) as second:
                second.send(hello)
                with pytest.raises(ConnectionClosed) as replaced:
                    first.recv(timeout=10 * UNIT)
                assert replaced.value.rcvd is not None and replaced.value.rcvd.code == 1012
                assert online(site.bridge.url, site.tokens["alice"])["spare"]
        wait_until(lambda: not online(site.bridge.url, site.tokens["alice"])["spare"], what="down")
    finally:
        site.bridge.registry.remove_endpoint("spare")
