#!/usr/bin/env bash
# scripts/test.sh -- install what the tests need, then run ruff, mypy and pytest.
#
#   sudo ./scripts/test.sh            everything (root: the firewall/netns tests run)
#   sudo ./scripts/test.sh -k jail    extra arguments go to pytest
#
# Steps:
#   1. apt packages the tests use (only those missing; needs root):
#      nftables iptables ipset iproute2 openssh-server rsyslog sshpass procps
#      libnftables1 postgresql chromium systemd systemd-journal-remote (journalctl, and
#      the writer of the journal files the journald tests read; no journald runs)
#      (and python3-venv if `python3 -m venv` does not work).
#      Services those packages would start (sshd, rsyslog) are NOT started: the
#      tests start their own copies.
#   2. a virtualenv at ./.venv (or $TAILBAN_TEST_VENV), created or reused, with
#      `pip install -e '.[test]'`.
#   3. ruff check src tests
#   4. mypy (settings and files from pyproject.toml)
#   5. python -m pytest -q "$@"
#
# All of 3-5 run even if an earlier one fails; the exit status is non-zero if any
# step failed. pytest's "no tests collected" (exit 5) is reported but not a failure.
#
# Environment: CI (passed through unchanged), TAILBAN_TEST_VENV (venv path),
# PYTHON (interpreter for a new venv, default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)

if [[ -n ${CI+x} ]]; then
    export CI
fi

VENV=${TAILBAN_TEST_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

heading() { printf '\n==== %s ====\n' "$*"; }
warn() { printf 'test.sh: warning: %s\n' "$*" >&2; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ $(id -u) -eq 0 ]]; }

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_UPDATED=0
# apt_install PKG... : install the packages that are not installed yet, without
# starting the services they ship.
apt_install() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]})) || { echo "all installed: $*"; return 0; }
    if ! is_root; then
        warn "missing packages: ${missing[*]} (not root, so not installing them;"
        warn "tests that need them will fail or be skipped; run: sudo $0)"
        return 0
    fi
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get"
    if ((APT_UPDATED == 0)); then
        apt-get update -q
        APT_UPDATED=1
    fi
    # Keep maintainer scripts from starting sshd/rsyslog on the host: a
    # policy-rc.d that answers 101 ("action forbidden") while we install.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local rc=0
    apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    if ((added_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    return "$rc"
}

py_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

venv_ok() {
    [[ -x $VENV/bin/python ]] && py_ok "$VENV/bin/python" &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

# make_venv PYTHON : (re)create $VENV with PYTHON; true on success.
make_venv() {
    rm -rf "$VENV"
    "$1" -m venv "$VENV" && venv_ok
}

# ------------------------------------------------------------------ 1. packages
heading "system packages"
if command -v dpkg-query >/dev/null; then
    apt_install nftables iptables ipset iproute2 openssh-server rsyslog sshpass \
        procps libnftables1 postgresql chromium openssl tzdata systemd systemd-journal-remote
else
    warn "no dpkg: install nftables iptables ipset iproute2 openssh-server rsyslog" \
        "sshpass procps libnftables1 postgresql chromium systemd systemd-journal-remote" \
        "yourself"
fi

# ------------------------------------------------------------------ 2. venv
heading "virtualenv ($VENV)"
if venv_ok; then
    echo "reusing $VENV ($("$VENV/bin/python" --version))"
else
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
    py_ok "$PYTHON" || die "$PYTHON is older than 3.11 (set PYTHON=...)"
    echo "creating $VENV with $(command -v "$PYTHON") ($("$PYTHON" --version))"
    if ! make_venv "$PYTHON"; then
        # Debian's python3 has no venv/ensurepip unless python3-venv is installed.
        echo "'$PYTHON -m venv' failed: installing python3-venv and retrying"
        if command -v dpkg-query >/dev/null; then
            apt_install python3-venv
        fi
        if ! make_venv "$PYTHON"; then
            # $PYTHON may be a non-Debian build (pyenv...) that python3-venv
            # cannot fix: fall back to Debian's interpreter.
            if [[ -x /usr/bin/python3 ]] && py_ok /usr/bin/python3 &&
                make_venv /usr/bin/python3; then
                echo "created $VENV with /usr/bin/python3 instead"
            else
                rm -rf "$VENV"
                die "could not create a virtualenv at $VENV"
            fi
        fi
    fi
fi
echo "pip install -e '.[test]'"
"$VENV/bin/python" -m pip install -q --progress-bar off -e "${ROOT}[test]"

# Make the venv's tools (and the `tailban` entry point) the ones tests find.
export VIRTUAL_ENV=$VENV
export PATH="$VENV/bin:$PATH"
hash -r

failed=()

# ------------------------------------------------------------------ 3. ruff
heading "ruff check src tests"
if ! "$VENV/bin/ruff" check src tests; then
    failed+=(ruff)
fi

# ------------------------------------------------------------------ 4. mypy
heading "mypy"
if ! "$VENV/bin/mypy"; then
    failed+=(mypy)
fi

# ------------------------------------------------------------------ 5. pytest
heading "pytest"
if ((${#failed[@]})); then
    echo "(${failed[*]} failed above: running pytest anyway; this script will exit 1)"
fi
if ! is_root; then
    echo "(not root: tests marked 'root' may be skipped or fail; CI runs as root)"
fi
rc=0
"$VENV/bin/python" -m pytest -q "$@" || rc=$?
case $rc in
    0) ;;
    5) echo "test.sh: warning: pytest collected no tests" >&2 ;;
    *) failed+=(pytest) ;;
esac

if ((${#failed[@]})); then
    echo "test.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
exit 0
