#!/usr/bin/env bash
# Set up a Debian 12 machine (as root) to run and test vxgate.
#
#   1. Debian packages (installed only when some are missing; no service is
#      started by the install: PostgreSQL is started by scripts/postgres.sh,
#      FRR daemons only ever run inside the simulator's namespaces).
#   2. The virtual environment <repo>/.venv, on the system interpreter with the
#      system site packages (Debian's python3-nftables is importable only there),
#      with requirements-dev.txt and the project (editable) installed. A stamp
#      file records the hash of the dependency files; while it matches, pip is
#      not run at all.
#
# Idempotent: a second run changes nothing and takes well under two seconds.
# Works from any current directory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.vxgate-stamp"
SYSTEM_PYTHON=/usr/bin/python3

PACKAGES=(
    python3-venv python3-pip python3-dev
    frr frr-pythontools
    nftables python3-nftables
    dnsmasq-base
    iproute2 iputils-ping
    isc-dhcp-client conntrack  # the SoftGate tests: a real DHCP client; conntrack state
    conntrackd  # a SoftGate pair shares connection tracking (agent/conntrackd.py)
    postgresql
    curl ca-certificates procps util-linux
    wrk  # bench/: a load generator that leaves the CPU to the service
    systemd shellcheck  # tests/unit/test_packaging.py: systemd-analyze verify, install.sh lint
)

die() {
    echo "setup: error: $*" >&2
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root"

# --- 1. Debian packages ---------------------------------------------------

missing_packages() {
    local installed
    # Packages dpkg has never heard of are reported on stderr and absent here.
    installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null \
        | awk '$2 ~ /^ii/ { print $1 }' || true)"
    local p
    for p in "${PACKAGES[@]}"; do
        grep -qxF -- "$p" <<<"$installed" || printf '%s\n' "$p"
    done
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0

remove_policy_rc() {
    if [[ "$POLICY_RC_OURS" -eq 1 ]]; then
        rm -f "$POLICY_RC"
        POLICY_RC_OURS=0
    fi
}

install_packages() {
    local -a missing=("$@")
    echo "setup: installing Debian packages: ${missing[*]}"
    # No service may start at install time (invoke-rc.d honours policy-rc.d;
    # exit 101 = "action forbidden"). Only add one if the machine has none.
    if [[ ! -e "$POLICY_RC" ]]; then
        trap remove_policy_rc EXIT
        printf '#!/bin/sh\n# vxgate setup: no service starts during package installation.\nexit 101\n' \
            >"$POLICY_RC"
        chmod 0755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
    local log
    log="$(mktemp /tmp/vxgate-apt.XXXXXX)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q &&
        apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${missing[@]}"; } >"$log" 2>&1 </dev/null; then
        tail -n 40 "$log" >&2
        die "apt-get failed (full log: $log)"
    fi
    rm -f "$log"
    remove_policy_rc
    trap - EXIT
}

mapfile -t MISSING < <(missing_packages)
if [[ "${#MISSING[@]}" -gt 0 ]]; then
    install_packages "${MISSING[@]}"
    mapfile -t MISSING < <(missing_packages)
    [[ "${#MISSING[@]}" -eq 0 ]] || die "still missing after install: ${MISSING[*]}"
fi
echo "setup: packages ok"

# --- 2. Virtual environment -----------------------------------------------

# A usable venv is built on /usr/bin/python3 (never a pyenv shim) and sees the
# system site packages. Anything else is rebuilt from scratch.
venv_ok() {
    [[ -x "$VENV/bin/python" && -f "$VENV/pyvenv.cfg" ]] || return 1
    [[ "$(readlink -f "$VENV/bin/python")" == "$(readlink -f "$SYSTEM_PYTHON")" ]] || return 1
    grep -qE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" || return 1
}

deps_hash() {
    local f files=()
    for f in requirements.txt requirements-dev.txt setup.cfg pyproject.toml; do
        [[ -f "$REPO/$f" ]] && files+=("$f")
    done
    (cd "$REPO" && sha256sum -- "${files[@]}") | sha256sum | cut -d' ' -f1
}

if ! venv_ok; then
    if [[ -e "$VENV" ]]; then
        echo "setup: rebuilding $VENV (not a system-python venv with system site packages)"
        rm -rf "$VENV"
    fi
    "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
    venv_ok || die "$VENV was created but does not use $SYSTEM_PYTHON"
fi
"$VENV/bin/python" -c 'import nftables' 2>/dev/null \
    || die "python3-nftables is not importable from $VENV"

WANT="$(deps_hash)"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$WANT" != "$HAVE" ]]; then
    echo "setup: installing Python dependencies into $VENV"
    rm -f "$STAMP"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    log="$(mktemp /tmp/vxgate-pip.XXXXXX)"
    # pip's output (including warnings about this machine's pip config) is shown
    # only when it fails.
    if ! (
        cd "$REPO"
        "$VENV/bin/pip" install -q -r requirements-dev.txt &&
            "$VENV/bin/pip" install -q --no-deps -e .
    ) >"$log" 2>&1 </dev/null; then
        tail -n 40 "$log" >&2
        die "pip install failed (full log: $log)"
    fi
    rm -f "$log"
    echo "$WANT" >"$STAMP"
fi
echo "setup: venv ok"
