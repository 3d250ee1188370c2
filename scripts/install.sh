#!/usr/bin/env bash
# Install vxgate on a real Debian 12 host (as root, from a vxgate checkout or release):
#
#   scripts/install.sh service [--start]   the provider service host
#   scripts/install.sh agent   [--start]   a SoftGate, KVM hypervisor or Linux leaf
#   scripts/install.sh all     [--start]   both on one host
#
#   1. Debian packages of the role (only those missing; apt starts FRR as usual).
#   2. /opt/vxgate/venv: a virtual environment on the system interpreter with the system
#      site packages (Debian's python3-nftables imports only there), the pinned
#      requirements.txt and vxgate itself (not editable: the checkout may go away).
#   3. /usr/local/bin/vxgate (the admin command), the systemd units, the vxgate user
#      (sysusers.d), /etc/vxgate (tmpfiles.d), /etc/vxgate/vxgate.env.sample and, only
#      if absent, /etc/vxgate/vxgate.env.
#   4. systemctl daemon-reload and enable; with --start also start (or restart).
#      The service role also gets vxgate-audit.service and its timer (an hourly,
#      report-only `vxgate cloudstack audit`); the timer is enabled only once
#      /etc/vxgate/cloudstack.env sets CLOUDSTACK_ENDPOINT (docs/operations.md).
#
# No simulator, no dev tools, no PostgreSQL server (docs/operations.md says where to put
# the database). Idempotent: a second run installs nothing new and changes nothing.
#
# --root DIR installs everything under DIR instead of / and skips apt-get and systemctl:
# for checking this script without touching the host (the venv's scripts name DIR in
# their paths, so the result is not a relocatable image).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SYSTEM_PYTHON=/usr/bin/python3
PREFIX=/opt/vxgate

COMMON_PACKAGES=(python3 python3-venv ca-certificates)
SERVICE_PACKAGES=()
# dnsmasq-base, not dnsmasq: the agent runs one dnsmasq per network; the dnsmasq
# package would also start a system-wide one on port 53.
AGENT_PACKAGES=(frr frr-pythontools nftables python3-nftables dnsmasq-base iproute2 conntrack
    conntrackd)

die() {
    echo "install: error: $*" >&2
    exit 1
}

usage() {
    # The comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

ROLE=""
START=0
ROOT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        service | agent | all) ROLE="$1" ;;
        --start) START=1 ;;
        --root)
            [[ $# -ge 2 ]] || die "--root needs a directory"
            ROOT="$(realpath -m -- "$2")"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
    shift
done
[[ -n "$ROLE" ]] || { usage >&2; die "say which role: service, agent or all"; }
[[ "$(id -u)" -eq 0 ]] || die "must run as root"
[[ -z "$ROOT" || "$START" -eq 0 ]] || die "--start cannot be used with --root"

UNITS=()
# Installed, but enabled only when configured (section 4): the audit needs CloudStack
# credentials, which only the operator can give.
AUDIT_UNITS=()
PACKAGES=("${COMMON_PACKAGES[@]}")
if [[ "$ROLE" == service || "$ROLE" == all ]]; then
    UNITS+=(vxgate-service.service)
    AUDIT_UNITS+=(vxgate-audit.service vxgate-audit.timer)
    PACKAGES+=("${SERVICE_PACKAGES[@]}")
fi
if [[ "$ROLE" == agent || "$ROLE" == all ]]; then
    UNITS+=(vxgate-agent.service)
    PACKAGES+=("${AGENT_PACKAGES[@]}")
fi
VENV="$ROOT$PREFIX/venv"

# --- 1. Debian packages ---------------------------------------------------

missing_packages() {
    local installed p
    installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null \
        | awk '$2 ~ /^ii/ { print $1 }' || true)"
    for p in "${PACKAGES[@]}"; do
        grep -qxF -- "$p" <<<"$installed" || printf '%s\n' "$p"
    done
}

if [[ -z "$ROOT" ]]; then
    mapfile -t MISSING < <(missing_packages)
    if [[ "${#MISSING[@]}" -gt 0 ]]; then
        echo "install: Debian packages: ${MISSING[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${MISSING[@]}"
    fi
    # The agent runs its own conntrackd per routing domain; Debian's, on the host's
    # table with the sample config, would sync nothing useful.
    if [[ " ${PACKAGES[*]} " == *" conntrackd "* ]] && [[ -d /run/systemd/system ]]; then
        systemctl disable --now conntrackd.service >/dev/null 2>&1 || true
    fi
    echo "install: packages ok"
fi

# --- 2. The virtual environment -------------------------------------------

# What decides the venv's contents: the pinned requirements and vxgate's own files.
source_hash() {
    (
        cd "$REPO"
        {
            sha256sum requirements.txt setup.cfg pyproject.toml
            find plugin provider_service agent frr_templates simulator -type f \
                \( -name '*.py' -o -name '*.j2' -o -name '*.json' -o -name '*.ini' \
                -o -name '*.mako' \) -not -path '*/__pycache__/*' -print0 \
                | sort -z | xargs -0 sha256sum
        } | sha256sum | cut -d' ' -f1
    )
}

venv_ok() {
    [[ -x "$VENV/bin/python" && -f "$VENV/pyvenv.cfg" ]] || return 1
    [[ "$(readlink -f "$VENV/bin/python")" == "$(readlink -f "$SYSTEM_PYTHON")" ]] || return 1
    grep -qE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"
}

if ! venv_ok; then
    rm -rf "$VENV"
    echo "install: creating $PREFIX/venv"
    install -d -m 0755 "$(dirname "$VENV")"
    "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
fi
STAMP="$VENV/.vxgate-installed"
WANT="$(source_hash)"
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]]; then
    echo "install: installing vxgate and its pinned requirements into $PREFIX/venv"
    rm -f "$STAMP"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # A copy of the tree: pip builds in it, and the checkout gets no build/ or .egg-info.
    BUILD="$(mktemp -d /tmp/vxgate-install.XXXXXX)"
    trap 'rm -rf "$BUILD"' EXIT
    tar -C "$REPO" --exclude=__pycache__ -cf - setup.cfg pyproject.toml README.md \
        requirements.txt plugin provider_service agent frr_templates simulator \
        | tar -C "$BUILD" -xf -
    LOG="$BUILD/pip.log"
    # pip's output only when it fails.
    if ! { "$VENV/bin/pip" install -q -r "$BUILD/requirements.txt" &&
        "$VENV/bin/pip" install -q --no-deps --force-reinstall "$BUILD"; } >"$LOG" 2>&1 </dev/null; then
        tail -n 40 "$LOG" >&2
        die "pip install failed"
    fi
    echo "$WANT" >"$STAMP"
fi
if [[ "$ROLE" != service ]]; then
    "$VENV/bin/python" -c 'import nftables' 2>/dev/null \
        || die "python3-nftables is not importable from $PREFIX/venv"
fi
echo "install: venv ok ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("vxgate", m.version("vxgate"))'))"

# --- 3. Units, user, directories, configuration ---------------------------

# install_file SRC DEST MODE: copy when different; print what changed.
install_file() {
    local src="$1" dest="$2" mode="$3"
    if ! cmp -s "$src" "$dest"; then
        install -D -m "$mode" "$src" "$dest"
        echo "install: wrote ${dest#"$ROOT"}"
    fi
}

# The admin command on PATH (`vxgate status`, `vxgate cloudstack register`, `vxgate db`).
if [[ "$(readlink "$ROOT/usr/local/bin/vxgate" 2>/dev/null || true)" != "$PREFIX/venv/bin/vxgate" ]]; then
    install -d -m 0755 "$ROOT/usr/local/bin"
    ln -sfn "$PREFIX/venv/bin/vxgate" "$ROOT/usr/local/bin/vxgate"
    echo "install: linked /usr/local/bin/vxgate"
fi

PACKAGING="$REPO/packaging"
for unit in "${UNITS[@]}" "${AUDIT_UNITS[@]}"; do
    install_file "$PACKAGING/systemd/$unit" "$ROOT/etc/systemd/system/$unit" 0644
done
install_file "$PACKAGING/tmpfiles.d/vxgate.conf" "$ROOT/etc/tmpfiles.d/vxgate.conf" 0644
if [[ "$ROLE" != agent ]]; then
    install_file "$PACKAGING/sysusers.d/vxgate.conf" "$ROOT/etc/sysusers.d/vxgate.conf" 0644
    install -d -m 0755 "$ROOT/etc"
    systemd-sysusers ${ROOT:+--root="$ROOT"} "$ROOT/etc/sysusers.d/vxgate.conf"
fi
systemd-tmpfiles ${ROOT:+--root="$ROOT"} --create "$ROOT/etc/tmpfiles.d/vxgate.conf"
install_file "$PACKAGING/vxgate.env.sample" "$ROOT/etc/vxgate/vxgate.env.sample" 0644
if [[ ! -e "$ROOT/etc/vxgate/vxgate.env" ]]; then
    install -m 0600 "$PACKAGING/vxgate.env.sample" "$ROOT/etc/vxgate/vxgate.env"
    echo "install: wrote /etc/vxgate/vxgate.env (every setting at its default; edit it)"
fi

# --- 4. systemd -----------------------------------------------------------

# The audit timer, on the service host, once the operator gave CloudStack's credentials:
# enabled without them, every pass would fail. Never disabled here: an operator who
# enabled it by hand keeps it.
enable_audit_timer() {
    [[ "${#AUDIT_UNITS[@]}" -gt 0 ]] || return 0
    if grep -qE '^CLOUDSTACK_ENDPOINT=.+' /etc/vxgate/cloudstack.env 2>/dev/null; then
        systemctl enable --quiet --now vxgate-audit.timer
        echo "install: enabled vxgate-audit.timer (hourly, report-only)"
    else
        echo "install: vxgate-audit.timer not enabled: put CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY"
        echo "         and CLOUDSTACK_SECRET in /etc/vxgate/cloudstack.env (mode 0600), run again"
    fi
}

if [[ -n "$ROOT" ]]; then
    echo "install: --root: not enabling ${UNITS[*]}"
elif [[ ! -d /run/systemd/system ]]; then
    echo "install: systemd is not running here: ${UNITS[*]} installed, not enabled" >&2
else
    systemctl daemon-reload
    systemctl enable --quiet "${UNITS[@]}"
    if [[ "$START" -eq 1 ]]; then
        systemctl restart "${UNITS[@]}"
        echo "install: started ${UNITS[*]}"
    else
        echo "install: enabled ${UNITS[*]}; edit /etc/vxgate/vxgate.env, then:"
        echo "         systemctl restart ${UNITS[*]}"
    fi
    enable_audit_timer
fi
