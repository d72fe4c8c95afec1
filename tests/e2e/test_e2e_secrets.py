"""Credentials never leave memory: pushed through every path, then searched for everywhere.

Random credentials (the simulator's users' tokens are fresh random strings each run, plus
made-up ones the simulator never issued) go through registration (valid and invalid),
submits, Globus failures, 401s, token expiry and refresh, consent errors, Globus being
unreachable, debug logging. Then every byte the system produced is searched: the state
folder (ledger, its -wal/-shm, copies taken while the daemon ran, endpoint.json, the daemon's
log, which holds its stdout and stderr), every HTTP answer (headers and body), every
WebSocket message and every client exception (str, repr, info, formatted traceback).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websockets
from e2e_support import C1, C2, fresh_access_token, wait_until

from live_stack import start_daemon
from radical.orbit import GlobusClient, OrbitError
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import MAPPED_COLLECTION_ID, Simulator
from radical.orbit.simulator.auth import Credentials, token_key
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT

GODATA = [{"source": "/home/share/godata/", "destination": "/~/sec/", "recursive": True}]
# Any run of this many characters of a credential counts as a hit (a truncated token).
WINDOW = 16
# What a Globus token looks like here (token_urlsafe(32)); used to find tokens we never saw.
TOKEN_SHAPE = re.compile(rb"[A-Za-z0-9_-]{43}")


class Evidence:
    """Everything produced that a credential must not be in."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # value -> what it is
        self.daemon_tokens: dict[str, str] = {}
        self.texts: list[tuple[str, str]] = []  # (where, text)
        self.codes: set[str] = set()

    def secret(self, what: str, value: str) -> str:
        self.secrets[value] = what
        return value

    def response(self, answer: httpx.Response) -> None:
        answer.read()
        head = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
        where = f"HTTP {answer.request.method} {answer.request.url.path} -> {answer.status_code}"
        self.texts.append((where, head + "\n\n" + answer.text))
        if answer.status_code >= 400:
            try:
                self.codes.add(str(answer.json().get("error")))
            except ValueError:
                self.codes.add(f"non-json {answer.status_code}")

    def exception(self, exc: BaseException) -> None:
        info = getattr(exc, "info", None)
        text = "\n".join(
            [str(exc), repr(exc), json.dumps(info, default=str), *traceback.format_exception(exc)]
        )
        self.texts.append((f"client exception {type(exc).__name__}", text))
        code = getattr(exc, "code", None)
        if code:
            self.codes.add(str(code))

    def expect_error(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except OrbitError as exc:
            self.exception(exc)
        else:
            raise AssertionError(f"{call} should have failed")

    def search(self, files: list[Path], sim: Simulator, daemon_token_files: set[Path]) -> list[str]:
        hits: list[str] = []
        blobs = [(where, text.encode()) for where, text in self.texts]
        for path in files:
            blobs.append((str(path), path.read_bytes()))
        for where, blob in blobs:
            private_token_file = Path(where) in daemon_token_files
            for value, what in {**self.secrets, **self.daemon_tokens}.items():
                if private_token_file and value in self.daemon_tokens:
                    continue  # the daemon's own token file holds it by design
                windows = {value[i : i + WINDOW] for i in range(max(1, len(value) - WINDOW + 1))}
                if any(window.encode() in blob for window in windows):
                    hits.append(f"{what} ({value[:4]}...) in {where}")
            # Tokens the test never saw (access tokens obtained by the daemon's refreshes):
            # anything shaped like a token that the simulator would accept.
            for candidate in set(TOKEN_SHAPE.findall(blob)):
                key = token_key(candidate.decode())
                if key in _live_token_keys(sim):
                    hits.append(f"a simulator-issued token ({candidate[:4]!r}...) in {where}")
        return sorted(set(hits))


def _live_token_keys(sim: Simulator) -> set[str]:
    users = sim._core.users
    return set(users._access) | set(users._refresh)


def test_no_credential_reaches_disk_logs_answers_or_errors(tmp_path: Path) -> None:
    ev = Evidence()
    with running_simulator(tmp_path) as sim:
        daemon = start_daemon(
            tmp_path / "state",
            sim,
            RADICAL_ORBIT_LOG_LEVEL="debug",
            # Every module of the daemon at its most verbose, the SDK's retries included.
            RADICAL_ORBIT_MAX_BACKOFF="0.5",
        )
        try:
            _exercise(ev, sim, daemon)
            snapshot = tmp_path / "snapshot"
            snapshot.mkdir()
            for path in daemon.state_dir.iterdir():
                if path.is_file():
                    shutil.copy(path, snapshot / path.name)
        finally:
            daemon.stop()
        files = [p for p in daemon.state_dir.rglob("*") if p.is_file()]
        files += [p for p in snapshot.iterdir() if p.is_file()]
        assert any(p.name == "ledger.db-wal" for p in files), [p.name for p in files]
        log = daemon.log_path.read_text()
        for line in ("session credential expired", "submit pending", "poll failed"):
            assert line in log, f"the daemon did not log {line!r}: the path was not taken"
        token_files = {daemon.state_dir / "token", snapshot / "token"}
        hits = ev.search(files, sim, token_files)
        # The search itself finds what it should: a fragment of a known secret, and a token
        # the test never saw but the simulator issued.
        planted = tmp_path / "planted.txt"
        some_secret = next(iter(ev.secrets))
        unseen = fresh_access_token(sim, sim.add_user("sec-planted"))
        planted.write_text(f"x{some_secret[3 : 3 + WINDOW]}y {unseen}\n")
        assert len(Evidence.search(ev, [planted], sim, set())) == 2
    assert not hits, "credentials found:\n" + "\n".join(hits)
    # The paths were really taken (each answer below was seen at least once).
    assert ev.codes >= {
        "Unauthorized",
        "ValidationError",
        "BadRequest",
        "CredentialRejected",
        "CredentialExpired",
        "ConsentRequired",
        "SubmitPending",
        "GlobusUnreachable",
    }, sorted(ev.codes)
    assert len(ev.secrets) >= 12


def _exercise(ev: Evidence, sim: Simulator, daemon: DaemonProcess) -> None:
    ev.daemon_tokens[daemon.token] = "daemon token (default)"
    token_b = daemon.add_token("sec-b")
    ev.daemon_tokens[token_b] = "daemon token (sec-b)"

    users: dict[str, Credentials] = {}
    for name in ("alice", "bob", "carol"):
        creds = sim.add_user(f"sec-{name}-{uuid.uuid4().hex[:6]}")
        users[name] = creds
        ev.secret(f"{name}'s access token", creds.access_token)
        ev.secret(f"{name}'s refresh token", creds.refresh_token)
        ev.secret(f"{name}'s client secret", creds.client_secret)
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    bogus_access = ev.secret("made-up access token", secrets.token_urlsafe(32))
    bogus_refresh = ev.secret("made-up refresh token", secrets.token_urlsafe(32))
    bogus_daemon = ev.secret("made-up daemon token", secrets.token_urlsafe(32))
    bogus_client = str(uuid.uuid4())

    http = httpx.Client(
        base_url=daemon.url,
        headers=daemon.headers,
        timeout=60 * UNIT,
        event_hooks={"response": [ev.response]},
    )

    def register(**body: Any) -> httpx.Response:
        return http.post("/globus/sessions", json=body)

    # -- registration, valid and not ----------------------------------------------------
    sid_alice = register(access_token=alice.access_token).json()["session_id"]
    sid_bob = register(refresh_token=bob.refresh_token, client_id=bob.client_id).json()[
        "session_id"
    ]
    sid_carol = register(access_token=carol.access_token).json()["session_id"]
    assert register(refresh_token=bogus_refresh, client_id=bob.client_id).status_code == 401
    assert register(refresh_token=bob.refresh_token, client_id=bogus_client).status_code == 401
    assert register(refresh_token=alice.refresh_token, client_id=bob.client_id).status_code == 401
    assert register(refresh_token=bob.refresh_token).status_code == 400  # no client_id
    assert register(acess_token=alice.access_token).status_code == 422  # typo'd field
    assert register(access_token=alice.access_token * 200).status_code == 422  # too long
    assert register(access_token=[alice.access_token]).status_code == 422  # wrong type
    assert register(access_token=alice.access_token, session_id=123).status_code == 422
    broken = http.post(
        "/globus/sessions",
        content=b'{"access_token": "' + alice.access_token.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code in (400, 422)
    sid_bogus = register(access_token=bogus_access).json()["session_id"]

    # -- 401s with credentials where the daemon token belongs ----------------------------
    for wrong in (bogus_daemon, alice.access_token, bob.refresh_token):
        answer = http.get("/endpoints", headers={"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 401
        answer = http.post(
            "/globus/sessions",
            headers={"Authorization": f"Bearer {wrong}"},
            json={"access_token": alice.access_token},
        )
        assert answer.status_code == 401

    def submit(session_id: str, **extra: Any) -> httpx.Response:
        body = {"source": C1, "destination": C2, "items": GODATA, **extra}
        return http.post(f"/globus/sessions/{session_id}/transfers", json=body)

    # -- submits: accepted, refused, pending, consent, a made-up token -------------------
    assert submit(sid_alice, label="fine").status_code == 200
    assert submit(sid_bob, label="fine").status_code == 200
    assert submit(sid_bogus).status_code == 401  # Globus refuses the made-up token
    consent = http.post(
        f"/globus/sessions/{sid_carol}/transfers",
        json={"source": MAPPED_COLLECTION_ID, "destination": C2, "items": GODATA},
    )
    assert consent.status_code == 401
    http.get(f"/globus/sessions/{sid_carol}/ls", params={"collection": MAPPED_COLLECTION_ID})
    sim.schedule_fault(route="submit_transfer", status=400, count=1)
    assert submit(sid_alice).status_code == 400
    sim.schedule_fault(route="submit_transfer", status=503, count=6)
    assert submit(sid_alice).status_code == 503  # SubmitPending, resent in the background
    sim.schedule_fault(route="task_list", status=500, count=3)
    http.post(f"/globus/sessions/{sid_alice}/deletes", json={"collection": C2, "paths": ["/~/x"]})
    http.get(f"/globus/sessions/{sid_alice}/ls", params={"collection": C2, "path": "/~/nowhere"})
    http.post(f"/globus/sessions/{sid_alice}/mkdir", json={"collection": C2, "path": "/~/m"})
    http.post(f"/globus/sessions/{sid_alice}/mkdir", json={"collection": C2, "path": "/~/m"})

    # -- token expiry: access token (session stops), refresh token (renewed, then revoked) --
    sid_alice_2 = register(access_token=alice.access_token).json()["session_id"]
    assert submit(sid_alice_2).status_code == 200
    sim.expire_token(alice.username)
    sim.expire_token(bob.username)

    def expired_recorded() -> list[str]:
        events = http.get("/globus/history", params={"limit": 1000}).json()["events"]
        kinds = {(e["session_id"], e["kind"]) for e in events}
        return [] if (sid_alice_2, "credential_expired") in kinds else ["no credential_expired"]

    wait_until(expired_recorded, timeout=15 * UNIT)
    assert submit(sid_alice_2).status_code == 401
    fresh = ev.secret("alice's second access token", fresh_access_token(sim, alice))
    assert register(access_token=fresh, session_id=sid_alice_2).status_code == 200
    assert submit(sid_bob).status_code == 200  # the daemon refreshed bob's access token
    sim.revoke_refresh_token(bob.refresh_token)
    sim.expire_token(bob.username)
    assert submit(sid_bob).status_code == 401

    # -- Globus unreachable: connection errors inside globus-sdk --------------------------
    assert submit(sid_alice_2).status_code == 200
    sim.stop()
    try:
        # The SDK retries a refused connection for a few seconds; the poller meanwhile
        # logs its own failed sweeps. The submit is recorded first (its submission id is
        # made locally), so Globus not answering leaves it pending: 503 SubmitPending.
        assert submit(sid_alice_2).status_code == 503
        unreachable = http.get(f"/globus/sessions/{sid_alice_2}/ls", params={"collection": C2})
        assert unreachable.status_code == 502  # GlobusUnreachable
    finally:
        sim.start()
    sim.clear_faults()
    sim.schedule_fault(route="task_list", status=401, count=2)  # Globus refusing a poll

    # -- the client library: every exception text is evidence too ------------------------
    with GlobusClient(daemon.url, daemon.token) as client:
        ev.texts.append(("client repr", repr(client)))
        ev.expect_error(
            lambda: client.register_session(refresh_token=bogus_refresh, client_id=bob.client_id)
        )
        ev.expect_error(lambda: client.register_session(access_token=alice.access_token * 300))
        client.register_session(access_token=carol.access_token)
        ev.texts.append(("client repr", repr(client)))
        ev.expect_error(
            lambda: client.submit_transfer(MAPPED_COLLECTION_ID, C2, GODATA, label="consent")
        )
        ev.expect_error(lambda: client.ls(MAPPED_COLLECTION_ID))
        sim.expire_token(carol.username)
        ev.expect_error(lambda: client.submit_transfer(C1, C2, GODATA))
        ev.expect_error(lambda: client.get_task("no-such-task"))
    with GlobusClient(daemon.url, bogus_daemon) as intruder:
        ev.expect_error(lambda: intruder.register_session(access_token=alice.access_token))
        ev.expect_error(lambda: intruder.list_tasks())
        with intruder.events(since=0, all_sessions=True) as stream:
            ev.expect_error(lambda: stream.get(timeout=5 * UNIT))

    # -- every WebSocket message, replay and live -----------------------------------------
    for message in asyncio.run(_websocket_messages(daemon, [daemon.token, token_b])):
        ev.texts.append(("websocket message", message))
    assert sum(1 for where, _ in ev.texts if where == "websocket message") >= 20
    http.close()


async def _websocket_messages(daemon: DaemonProcess, tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        async with websockets.connect(
            daemon.ws_url + "?since=0", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            try:
                async with asyncio.timeout(1.5):
                    while True:
                        out.append(str(await ws.recv()))
            except TimeoutError:
                pass
    return out
