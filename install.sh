#!/bin/sh
# install.sh -- install tailban on this host (Debian 12 or similar), as root.
#
#   sudo ./install.sh              install (or upgrade) and start/restart the daemon
#   sudo ./install.sh --no-start   install only; start it yourself later
#
# What it does (safe to run again; every step is idempotent):
#   * apt-get installs nftables and iproute2 if missing (and python3-venv when
#     `python3 -m venv` does not work);
#   * creates a virtualenv in $TAILBAN_PREFIX/venv (default /opt/tailban/venv) and
#     pip-installs tailban from the directory this script lives in (a normal,
#     non-editable install);
#   * links /usr/local/sbin/tailban -> that venv's `tailban`;
#   * copies etc/tailban/ to /etc/tailban/, never overwriting a file that is
#     already there (your edits survive upgrades);
#   * creates /var/lib/tailban and /run/tailban (mode 0750);
#   * with systemd: installs /etc/systemd/system/tailban.service, enables it and
#     (re)starts it; without systemd: `tailban start` (or `tailban reload` when it
#     is already running);
#   * checks the daemon answers `tailban ping` and shows `tailban status`.
#
# Environment:
#   TAILBAN_PREFIX   where the venv goes (default /opt/tailban)
#   TAILBAN_PYTHON   interpreter for the venv (default: /usr/bin/python3 if it is
#                    3.11 or newer, else python3 on PATH)
set -eu

PROG=install.sh
BIN_LINK=/usr/local/sbin/tailban
CONF_DIR=/etc/tailban
STATE_DIR=/var/lib/tailban
RUN_DIR=/run/tailban
UNIT_DIR=/etc/systemd/system
UNIT_NAME=tailban.service

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: $PROG [--no-start]

Installs tailban into \${TAILBAN_PREFIX:-/opt/tailban}/venv, links $BIN_LINK,
copies default configuration to $CONF_DIR (never overwriting existing files)
and starts (or restarts) the daemon.

  --no-start   install everything but do not start, restart or reload the daemon
  -h, --help   show this help
EOF
}

START=1
for arg in "$@"; do
    case $arg in
        --no-start) START=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    die "must be run as root (try: sudo $0)"
fi

SRC_DIR=$(cd "$(dirname "$0")" && pwd -P)
[ -f "$SRC_DIR/pyproject.toml" ] || die "no pyproject.toml next to $0 (in $SRC_DIR)"

PREFIX=${TAILBAN_PREFIX:-/opt/tailban}
case $PREFIX in
    /*) ;;
    *) die "TAILBAN_PREFIX must be an absolute path, got: $PREFIX" ;;
esac
PREFIX=${PREFIX%/}
VENV=$PREFIX/venv
TAILBAN=$VENV/bin/tailban

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0

# ---------------------------------------------------------------- helpers

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# apt_install PKG... : install the packages that are not installed yet.
apt_install() {
    missing=
    for p in "$@"; do
        pkg_installed "$p" || missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages:$missing (and no apt-get here: install them by hand)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        apt-get update -q
        APT_UPDATED=1
    fi
    say "apt-get install$missing"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
}

# py_ok PYTHON : true if PYTHON runs and is at least 3.11 (pyproject's requires-python).
py_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && py_ok "$VENV/bin/python" &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

make_venv() {
    rm -rf "$VENV"
    mkdir -p "$PREFIX"
    "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 && venv_ok
}

# ---------------------------------------------------------------- packages

if command -v dpkg-query >/dev/null 2>&1; then
    apt_install nftables iproute2
else
    warn "not a Debian-like system: make sure nft (nftables) and ip (iproute2) are installed"
fi
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || warn "nft not found; tailban needs nftables"

# ---------------------------------------------------------------- python

# The daemon runs under systemd with ProtectHome=yes, so its interpreter must not
# live under /root or /home (a pyenv python there would be invisible to it).
# Prefer the distribution's python.
if [ -n "${TAILBAN_PYTHON:-}" ]; then
    PYTHON=$TAILBAN_PYTHON
elif py_ok /usr/bin/python3; then
    PYTHON=/usr/bin/python3
elif command -v python3 >/dev/null 2>&1 && py_ok python3; then
    PYTHON=$(command -v python3)
else
    apt_install python3
    PYTHON=/usr/bin/python3
fi
py_ok "$PYTHON" || die "$PYTHON is missing or older than 3.11 (set TAILBAN_PYTHON)"
PY_REAL=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')
case $PY_REAL in
    /root/*|/home/*|/run/user/*)
        warn "interpreter $PY_REAL is under /root, /home or /run/user: the systemd unit"
        warn "(ProtectHome=yes) will not be able to run it; set TAILBAN_PYTHON=/usr/bin/python3" ;;
esac

if venv_ok; then
    say "reusing virtualenv $VENV"
else
    say "creating virtualenv $VENV (with $PYTHON)"
    if ! make_venv; then
        # Debian's python3 ships the venv module (with ensurepip) separately.
        note "'$PYTHON -m venv' failed; installing python3-venv"
        if command -v dpkg-query >/dev/null 2>&1; then
            apt_install python3-venv
        fi
        make_venv || {
            rm -rf "$VENV"
            die "could not create a virtualenv with $PYTHON (is python3-venv installed?)"
        }
    fi
fi

# ---------------------------------------------------------------- tailban itself

say "installing tailban from $SRC_DIR"
# Build from a scratch copy, so that the source tree (possibly read-only, or a
# developer's checkout) gets no build/ or *.egg-info litter.
BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tailban-build.XXXXXX")
trap 'rm -rf "$BUILD_DIR"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
(
    cd "$SRC_DIR"
    tar --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
        --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis \
        -cf - .
) | (cd "$BUILD_DIR" && tar -xf -)
[ -f "$BUILD_DIR/pyproject.toml" ] || die "could not copy the source tree to $BUILD_DIR"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q \
    --upgrade "$BUILD_DIR"
rm -rf "$BUILD_DIR"
[ -x "$TAILBAN" ] || die "pip did not install $TAILBAN (no script-files entry in pyproject.toml?)"
note "$("$VENV/bin/python" -m pip show tailban 2>/dev/null | sed -n 's/^Version: /tailban version /p')"

mkdir -p "$(dirname "$BIN_LINK")"
ln -sfn "$TAILBAN" "$BIN_LINK"
note "linked $BIN_LINK -> $TAILBAN"

# ---------------------------------------------------------------- configuration

say "configuration in $CONF_DIR"
mkdir -p "$CONF_DIR"
chmod 0755 "$CONF_DIR"
if [ -d "$SRC_DIR/etc/tailban" ]; then
    (cd "$SRC_DIR/etc/tailban" && find . -type d) | while IFS= read -r d; do
        mkdir -p "$CONF_DIR/${d#./}"
    done
    (cd "$SRC_DIR/etc/tailban" && find . -type f) | while IFS= read -r f; do
        rel=${f#./}
        if [ -e "$CONF_DIR/$rel" ] || [ -L "$CONF_DIR/$rel" ]; then
            note "kept     $CONF_DIR/$rel (exists; shipped version not copied)"
        else
            cp "$SRC_DIR/etc/tailban/$rel" "$CONF_DIR/$rel"
            chmod 0644 "$CONF_DIR/$rel"
            note "installed $CONF_DIR/$rel"
        fi
    done
else
    warn "no etc/tailban/ in $SRC_DIR: no default configuration copied"
fi

install -d -m 0750 "$STATE_DIR"
install -d -m 0750 "$RUN_DIR"
chmod 0750 "$STATE_DIR" "$RUN_DIR"

# ---------------------------------------------------------------- service

HAVE_SYSTEMD=0
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    HAVE_SYSTEMD=1
fi

if [ "$HAVE_SYSTEMD" -eq 1 ]; then
    say "systemd unit $UNIT_DIR/$UNIT_NAME"
    install -m 0644 "$SRC_DIR/systemd/$UNIT_NAME" "$UNIT_DIR/$UNIT_NAME"
    systemctl daemon-reload
fi

if [ "$START" -eq 0 ]; then
    say "installed; not started (--no-start)"
    if [ "$HAVE_SYSTEMD" -eq 1 ]; then
        note "start it with:  systemctl enable --now tailban"
    else
        note "start it with:  tailban start"
    fi
    note "configuration:  $CONF_DIR/"
    exit 0
fi

if [ "$HAVE_SYSTEMD" -eq 1 ]; then
    systemctl enable "$UNIT_NAME" >/dev/null 2>&1 || systemctl enable "$UNIT_NAME"
    if systemctl is-active --quiet "$UNIT_NAME"; then
        say "restarting tailban (systemctl restart tailban)"
        systemctl restart "$UNIT_NAME"
    else
        say "starting tailban (systemctl start tailban)"
        systemctl start "$UNIT_NAME"
    fi
else
    if "$BIN_LINK" ping >/dev/null 2>&1; then
        say "tailban is already running: reloading (tailban reload)"
        note "the running daemon keeps its old code; to run the newly installed"
        note "version: tailban stop && tailban start"
        "$BIN_LINK" reload
    else
        say "starting tailban (tailban start; no systemd here)"
        "$BIN_LINK" start
    fi
fi

say "waiting for the daemon to answer"
i=0
until "$BIN_LINK" ping >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 10 ]; then
        if [ "$HAVE_SYSTEMD" -eq 1 ]; then
            systemctl --no-pager status "$UNIT_NAME" >&2 || true
            die "tailban does not answer 'tailban ping' after 5 s; see: journalctl -u tailban"
        fi
        die "tailban does not answer 'tailban ping' after 5 s; see its log (syslog)"
    fi
    sleep 0.5
done
"$BIN_LINK" ping

say "status"
"$BIN_LINK" status || warn "'tailban status' failed"

say "done"
note "configuration:  $CONF_DIR/ (change tailban.local, jail.local or jail.d/*.local;"
note "                existing files are never overwritten: delete one to get the shipped copy)"
note "state:          $STATE_DIR/"
if [ "$HAVE_SYSTEMD" -eq 1 ]; then
    note "logs:           journalctl -u tailban"
    note "control:        systemctl reload|restart|stop tailban"
else
    note "logs:           where logtarget in $CONF_DIR/tailban.conf says (once daemonised,"
    note "                stderr goes nowhere: set logtarget = syslog or a file in tailban.local)"
    note "control:        tailban reload | tailban stop | tailban status"
fi
