#!/usr/bin/env bash
# Run the shipped units under real systemd, in a throwaway systemd-nspawn container.
#
#   sudo tests/systemd/boot_check.sh
#
# Not part of the pytest run: it needs root, overlayfs, mount namespaces and the
# systemd-container package (apt-get install systemd-container). The host is not changed:
# the container's root is an overlay of / with a tmpfs on top, its network is private,
# and everything is unmounted at the end.
#
# Checks: the system unit starts under its dynamic user with READY and STATUS, serves the
# API, takes a token added with the documented systemd-run command, talks to the simulator
# (a Globus session), is restarted by the watchdog when frozen, stops cleanly, and its live
# security score is at most 2.0; the user unit starts under a user manager.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV_SITE="$(echo "$ROOT"/.venv/lib/python3.*/site-packages)"
PY=/usr/bin/python3
WORK="$(mktemp -d /var/tmp/orbit-boot.XXXXXX)"
UP="$WORK/up"
TREE="$WORK/root"
NSPAWN_PID=""
failed=0

say() { printf '%s\n' "$*"; }
check() {  # check NAME COMMAND...: run, print ok/FAIL
    local name="$1"
    shift
    if "$@"; then say "ok   $name"; else say "FAIL $name"; failed=1; fi
}

[ "$(id -u)" -eq 0 ] || { say "run as root"; exit 2; }
command -v systemd-nspawn >/dev/null || { say "needs systemd-nspawn (apt-get install systemd-container)"; exit 2; }
# The container reuses the dev virtualenv's packages with the distribution's python3.
want="$(basename "$(dirname "$VENV_SITE")")"
have="python$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[ "$want" = "$have" ] || { say "$PY is $have, the virtualenv is $want"; exit 2; }

in_ct() { nsenter -t "$LEADER" -a "$@"; }

cleanup() {
    set +e
    if [ -n "${LEADER:-}" ] && kill -0 "$LEADER" 2>/dev/null; then
        in_ct /bin/systemctl poweroff --no-block >/dev/null 2>&1
        for _ in $(seq 1 30); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 1; done
    fi
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -9 "$NSPAWN_PID" 2>/dev/null
        sleep 1
    fi
    mountpoint -q "$TREE" && umount "$TREE"
    mountpoint -q "$UP" && umount "$UP"
    rm -rf "$WORK" /run/systemd/nspawn/propagate/"$(basename "$TREE")"
}
trap cleanup EXIT

# -- the container's file system: / read through, writes into a tmpfs ----------------------
mkdir -p "$UP" "$TREE"
mount -t tmpfs -o size=2g tmpfs "$UP"
mkdir "$UP/upper" "$UP/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$UP/upper,workdir=$UP/work" "$TREE"

# The virtualenv as section 1 of docs/operations.md lays it out, with the packages of the
# dev virtualenv (same python minor version) instead of a download.
chroot "$TREE" "$PY" -m venv --without-pip /opt/orbit-globus
echo "import site; site.addsitedir('$VENV_SITE')" \
    >"$TREE/opt/orbit-globus/lib/$want/site-packages/orbit-dev.pth"
cat >"$TREE/opt/orbit-globus/bin/orbit-globus-endpoint" <<'EOF'
#!/opt/orbit-globus/bin/python3
import sys
from radical.orbit.daemon.__main__ import main
sys.exit(main())
EOF
chmod 0755 "$TREE/opt/orbit-globus/bin/orbit-globus-endpoint"
install -m 0644 "$ROOT/systemd/orbit-globus-endpoint.service" "$TREE/etc/systemd/system/"
# Boot only what the check needs, not the host's enabled services.
cat >"$TREE/etc/systemd/system/orbit-check.target" <<'EOF'
[Unit]
Description=orbit-globus boot check
Requires=basic.target
After=basic.target
Wants=orbit-globus-endpoint.service
EOF
mkdir -p "$TREE/etc/orbit-globus"
cat >"$TREE/etc/orbit-globus/endpoint.env" <<'EOF'
GLOBUS_SDK_SERVICE_URL_TRANSFER=http://127.0.0.1:8500/
GLOBUS_SDK_SERVICE_URL_AUTH=http://127.0.0.1:8500/
RADICAL_ORBIT_POLL_INTERVAL=1
EOF
cp "$ROOT/tests/systemd/boot_check_client.py" "$TREE/srv/client.py"

# -- boot ----------------------------------------------------------------------------------
systemd-nspawn -D "$TREE" --boot --private-network --register=no --keep-unit \
    --uuid="$(tr -d - </proc/sys/kernel/random/uuid)" --console=passive \
    -- --unit=orbit-check.target >"$WORK/nspawn.log" 2>&1 &
NSPAWN_PID=$!
for _ in $(seq 1 50); do
    LEADER="$(ps --ppid "$NSPAWN_PID" -o pid= | tr -d ' ' || true)"
    [ -n "$LEADER" ] && break
    sleep 0.2
done
[ -n "$LEADER" ] || { cat "$WORK/nspawn.log"; say "container did not start"; exit 1; }
for _ in $(seq 1 120); do
    state="$(in_ct /bin/systemctl is-active orbit-globus-endpoint 2>/dev/null || true)"
    [ "$state" = active ] && break
    sleep 0.5
done

unit_is() { [ "$(in_ct /bin/systemctl show orbit-globus-endpoint -p "$1" --value)" = "$2" ]; }
status_like() {
    in_ct /bin/systemctl show orbit-globus-endpoint -p StatusText --value \
        | grep -Eq "^$1 sessions, [0-9]+ active tasks, ledger head [0-9]+$"
}
check "system unit active (READY received)" unit_is ActiveState active
check "runs as the dynamic user orbit-globus" \
    test "$(in_ct /bin/ps -o user= -p "$(in_ct /bin/systemctl show -p MainPID --value orbit-globus-endpoint)")" = orbit-globus
check "STATUS= shown" status_like 0
check "state folder is 0700" test "$(in_ct /bin/stat -c %a /var/lib/private/orbit-globus)" = 700
check "API answers with the default token" in_ct "$PY" /srv/client.py endpoints
token="$(in_ct /bin/systemd-run --quiet --wait --pipe --collect \
    -p DynamicUser=yes -p User=orbit-globus -p StateDirectory=orbit-globus \
    -p StateDirectoryMode=0700 -p UMask=0077 \
    /opt/orbit-globus/bin/orbit-globus-endpoint token add alice --quiet)"
check "token added with systemd-run works" in_ct "$PY" /srv/client.py endpoints "$token"
check "state folder still 0700" test "$(in_ct /bin/stat -c %a /var/lib/private/orbit-globus)" = 700

in_ct /bin/systemd-run --quiet --unit=orbit-sim -p PrivateTmp=yes \
    "$ROOT/.venv/bin/orbit-globus-sim" --port 8500
sleep 3
check "Globus session through the simulator" in_ct "$PY" /srv/client.py session
sleep 6  # the daemon refreshes STATUS every 5 s
check "STATUS follows sessions" status_like 1

score="$(in_ct /bin/systemd-analyze security orbit-globus-endpoint --no-pager \
    | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')"
say "     live exposure score: $score"
check "live exposure score <= 2.0" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'

# Watchdog: shorten the period for the check, freeze the process, expect a restart.
mkdir -p "$TREE/etc/systemd/system/orbit-globus-endpoint.service.d"
printf '[Service]\nWatchdogSec=4\n' >"$TREE/etc/systemd/system/orbit-globus-endpoint.service.d/check.conf"
in_ct /bin/systemctl daemon-reload
in_ct /bin/systemctl restart orbit-globus-endpoint
pid="$(in_ct /bin/systemctl show -p MainPID --value orbit-globus-endpoint)"
in_ct /bin/kill -STOP "$pid"
sleep 12
check "watchdog restarted the frozen daemon" unit_is NRestarts 1
check "active again after the restart" unit_is ActiveState active
in_ct /bin/systemctl stop orbit-globus-endpoint
check "clean stop (exit 0)" unit_is ExecMainStatus 0
check "stop result success" unit_is Result success

# -- the user unit under a user manager ------------------------------------------------------
# nspawn puts a pipe on /proc/kmsg that a user manager cannot mask (ProtectKernelLogs=);
# a normal host has the plain file, so restore that.
in_ct /bin/umount /proc/kmsg 2>/dev/null || true
in_ct /usr/sbin/useradd -m -s /bin/sh checker
uid="$(in_ct /usr/bin/id -u checker)"
in_ct /bin/su - checker -c "$PY -m venv --without-pip ~/.local/opt/orbit-globus &&
    echo \"import site; site.addsitedir('$VENV_SITE')\" >~/.local/opt/orbit-globus/lib/$want/site-packages/orbit-dev.pth &&
    sed '1s|.*|#!'\$HOME'/.local/opt/orbit-globus/bin/python3|' /opt/orbit-globus/bin/orbit-globus-endpoint >~/.local/opt/orbit-globus/bin/orbit-globus-endpoint &&
    chmod 0755 ~/.local/opt/orbit-globus/bin/orbit-globus-endpoint &&
    install -D -m 0644 $ROOT/systemd/user/orbit-globus-endpoint.service ~/.config/systemd/user/orbit-globus-endpoint.service"
in_ct /bin/systemctl start "user@$uid.service"
as_user() { in_ct /bin/su - checker -c "XDG_RUNTIME_DIR=/run/user/$uid $*"; }
as_user systemctl --user start orbit-globus-endpoint || true
check "user unit active" test "$(as_user systemctl --user is-active orbit-globus-endpoint)" = active
check "user unit STATUS= shown" bash -c "[[ \"\$(nsenter -t $LEADER -a /bin/su - checker -c 'XDG_RUNTIME_DIR=/run/user/$uid systemctl --user show -p StatusText --value orbit-globus-endpoint')\" == '0 sessions, '* ]]"
uscore="$(as_user systemd-analyze --user security orbit-globus-endpoint --no-pager \
    | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')"
say "     user unit live exposure score: $uscore"
check "user unit live exposure score <= 2.0" awk -v s="$uscore" 'BEGIN { exit !(s != "" && s <= 2.0) }'

if [ "$failed" -ne 0 ]; then
    say "--- journal of the container (last 40 lines):"
    in_ct /bin/journalctl --no-pager -n 40 || true
fi
exit "$failed"
