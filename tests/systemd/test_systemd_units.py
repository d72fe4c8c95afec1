"""The unit files: required settings, the network allow list, systemd-analyze verdicts."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from radical.orbit.daemon.runtime.config import load_config
from timing import UNIT

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_UNIT = ROOT / "systemd" / "orbit-globus-endpoint.service"
USER_UNIT = ROOT / "systemd" / "user" / "orbit-globus-endpoint.service"
CHECK = ROOT / ".ci" / "systemd-check"
MAX_EXPOSURE = 2.0

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> key -> every value in order (unit files repeat keys, configparser can't)."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, key: str) -> str:
    values = unit["Service"].get(key, [])
    assert len(values) == 1, f"{key}= set {len(values)} times: {values}"
    return values[0]


@pytest.mark.parametrize("path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_service_contract(path: Path) -> None:
    unit = parse_unit(path)
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "StateDirectory": "orbit-globus",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: one(unit, key) for key in expected} == expected
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    exec_start = one(unit, "ExecStart").split()
    assert exec_start[0].endswith("/bin/orbit-globus-endpoint")
    assert exec_start[1] == "serve"
    assert exec_start[exec_start.index("--state-dir") + 1] == "${STATE_DIRECTORY}"


@pytest.mark.parametrize("path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_no_secret_in_the_environment(path: Path) -> None:
    unit = parse_unit(path)
    assignments = [a for line in unit["Service"].get("Environment", []) for a in line.split()]
    names = [item.split("=", 1)[0] for item in assignments]
    # The user unit sets no port: each user's daemon keeps the one it first bound, so
    # several users on one login node never collide on a fixed default.
    port = ["RADICAL_ORBIT_PORT"] if path == SYSTEM_UNIT else []
    assert names == [
        "RADICAL_ORBIT_HOST",
        *port,
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
    ]
    # The credential route is documented in the unit, ready to uncomment.
    assert re.search(r"^#LoadCredential=client-token:", path.read_text(), re.MULTILINE)


@pytest.mark.parametrize("path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_the_daemon_understands_the_unit(path: Path, tmp_path: Path) -> None:
    unit = parse_unit(path)
    env = dict(a.split("=", 1) for line in unit["Service"]["Environment"] for a in line.split())
    env["STATE_DIRECTORY"] = str(tmp_path)
    config = load_config(flags={"state_dir": str(tmp_path)}, env=env)
    port = 8421 if path == SYSTEM_UNIT else None
    assert (config.host, config.port, config.state_dir) == ("127.0.0.1", port, tmp_path)
    # Every flag of ExecStart exists in the real command line.
    help_text = subprocess.run(
        [sys.executable, "-m", "radical.orbit.daemon", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60 * UNIT,
    ).stdout
    for word in one(unit, "ExecStart").split()[2:]:
        if word.startswith("--"):
            assert word in help_text


def test_system_unit_identity_and_sandbox() -> None:
    unit = parse_unit(SYSTEM_UNIT)
    for key in (
        "DynamicUser",
        "ProtectHome",
        "PrivateDevices",
        "PrivateUsers",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "LockPersonality",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "RemoveIPC",
    ):
        assert one(unit, key) == "yes", key
    assert one(unit, "ProtectProc") == "invisible"
    assert one(unit, "ProcSubset") == "pid"
    assert one(unit, "DevicePolicy") == "closed"
    assert one(unit, "AmbientCapabilities") == ""
    # A fixed name, so admin commands can run as the same dynamic user (docs/operations.md).
    assert one(unit, "User") == "orbit-globus"


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    unit = parse_unit(SYSTEM_UNIT)
    assert unit["Service"]["IPAddressDeny"] == ["any"]
    nets = []
    for line in unit["Service"]["IPAddressAllow"]:
        for item in line.split():
            if item != "localhost":
                nets.append(ipaddress.ip_network(item))
    return nets


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),  # the daemon's own API, the simulator in tests
        ("::1", True),
        ("3.210.54.17", True),  # public cloud address space, where Globus runs
        ("52.1.2.3", True),
        ("18.204.0.1", True),
        ("2600:1f18::1", True),
        ("169.254.169.254", False),  # cloud instance metadata (credentials!)
        ("fd00:ec2::254", False),
        ("10.1.2.3", False),
        ("172.16.5.4", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("224.0.0.251", False),
        ("fe80::1", False),
        ("0.0.0.0", False),
    ],
)
def test_ip_allow_list(address: str, allowed: bool) -> None:
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        assert "localhost" in " ".join(parse_unit(SYSTEM_UNIT)["Service"]["IPAddressAllow"])
        return
    assert any(ip in net for net in _allowed_networks()) is allowed


def test_ip_allow_list_is_exactly_public_ipv4() -> None:
    closed = [
        ipaddress.ip_network(n)
        for n in (
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",  # link-local: cloud instance metadata
            "172.16.0.0/12",
            "192.168.0.0/16",
            "224.0.0.0/4",
            "240.0.0.0/4",
        )
    ]
    v4 = [n for n in _allowed_networks() if isinstance(n, ipaddress.IPv4Network)]
    assert sum(n.num_addresses for n in v4) == 2**32 - sum(n.num_addresses for n in closed)
    assert not any(a.overlaps(b) for a in v4 for b in closed)
    assert not any(a.overlaps(b) for i, a in enumerate(v4) for b in v4[i + 1 :])


needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (.ci/systemd-check installs it)",
)


def _run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), "--no-install", *args], capture_output=True, text=True, timeout=120 * UNIT
    )


def _scores(output: str) -> dict[str, float]:
    """Scores of the units that passed, by mode."""
    found = re.findall(r"ok   security \((\w+)\) \S+: exposure ([0-9.]+)", output)
    return {mode: float(score) for mode, score in found}


@needs_analyze
def test_shipped_units_pass_verify_and_security() -> None:
    result = _run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    # The endpoint's system and user units and the bridge's system unit.
    assert result.stdout.count("ok   verify") == 3
    assert "orbit-globus-bridge.service: exposure" in result.stdout
    scores = _scores(result.stdout)
    assert set(scores) == {"system", "user"}
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


@needs_analyze
def test_check_rejects_a_weak_or_broken_unit(tmp_path: Path) -> None:
    # The Globus Compute endpoint's style: Type=simple, no sandbox; plus a typo.
    weak = tmp_path / "weak.service"
    weak.write_text(
        "[Unit]\nDescription=weak\n\n[Service]\nType=simple\n"
        "ExecStart=/usr/bin/true\nRestart=alwayz\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    result = _run_check("--system", str(weak))
    assert result.returncode == 1
    assert "FAIL verify (system)" in result.stdout
    assert "alwayz" in result.stdout
    assert _scores(result.stdout) == {}
    failed = re.search(r"FAIL security \(system\) \S+: exposure ([0-9.]+) > 2.0", result.stdout)
    assert failed is not None, result.stdout
    assert float(failed.group(1)) > 9  # "UNSAFE": an unhardened unit scores above 9


DOCS = ROOT / "docs" / "operations.md"


def _doc_drop_ins() -> list[tuple[str, str]]:
    """(mode, text) of every ```ini block in the operator docs; all are drop-ins."""
    docs = DOCS.read_text()
    found = []
    for match in re.finditer(r"^```ini\n(.*?)^```$", docs, re.MULTILINE | re.DOTALL):
        lines = match.group(1).splitlines()
        # The text just before a block says which unit it is for (`systemctl --user edit`).
        before = docs[max(0, match.start() - 400) : match.start()]
        mode = "user" if "--user edit" in before else "system"
        found.append((mode, "\n".join(line for line in lines if line.strip()) + "\n"))
    return found


def test_docs_have_drop_ins_for_both_units() -> None:
    modes = [mode for mode, _ in _doc_drop_ins()]
    assert modes.count("system") >= 2
    assert modes.count("user") >= 1


@needs_analyze
@pytest.mark.parametrize(("mode", "text"), _doc_drop_ins())
def test_docs_drop_ins_pass_verify(mode: str, text: str, tmp_path: Path) -> None:
    name = SYSTEM_UNIT.name
    program = parse_unit(SYSTEM_UNIT if mode == "system" else USER_UNIT)["Service"]["ExecStart"]
    program_path = program[0].split()[0]
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir(mode=0o700)
    if mode == "system":
        root = tmp_path / "root"
        units = root / "etc" / "systemd" / "system"
        (units / (name + ".d")).mkdir(parents=True)
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        shutil.copy(SYSTEM_UNIT, units / name)
        stub = root / program_path.lstrip("/")
        args = ["systemd-analyze", "verify", f"--root={root}", name]
    else:
        home = tmp_path / "home"
        units = home / ".config" / "systemd" / "user"
        (units / (name + ".d")).mkdir(parents=True)
        shutil.copy(USER_UNIT, units / name)
        stub = Path(program_path.replace("%h", str(home)))
        env["HOME"] = str(home)
        args = ["systemd-analyze", "verify", "--user", name]
    (units / (name + ".d") / "docs.conf").write_text(text)
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60 * UNIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
