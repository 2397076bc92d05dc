#!/usr/bin/env bash
# Shared by ./run and ./test: install what is missing, and only that.
#   ensure_debs PKG...   Debian packages (apt-get), skipped when already installed
#   ensure_venv [EXTRA]  .venv with onepane installed, redone only when pyproject.toml changes
#   ensure_vm_host       QEMU, libvirt (daemons, headers for libvirt-python) and its QEMU user
#   ensure_qemu          QEMU >= 10.0 (bookworm-backports on Debian 12): see docs/vm.md
#   config_wants_vm ARGS whether `onepane up ARGS` names a config with a vm location
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

ensure_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local extra="${1:-}"
  local venv="$ROOT/.venv"
  local base="$venv/.stamp-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  local stamp="$base${extra:+-$extra}"
  [ -f "$stamp" ] && return 0
  [ -f "$base-dev" ] && return 0   # the dev install has every extra
  echo "preparing $venv ..." >&2
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$ROOT${extra:+[$extra]}"
  rm -f "$venv"/.stamp-*
  touch "$stamp"
}

# compile_sources: onepane's own modules byte-compiled now. Where PYTHONDONTWRITEBYTECODE is set
# (this project's machines set it) Python never keeps what it compiles on import, so every CLI
# call and server start compiled them again (~15 ms a CLI call, ~150 ms a server start); a
# .pyc made here is read by all of them, and one left stale by an edit is only ignored.
compile_sources() {
  "$ROOT/.venv/bin/python" -m compileall -q "$ROOT/onepane" >/dev/null
}

# QEMU 7.2 (Debian 12's own) corrupts a TCG guest's memory in live moves: a guest moved while
# it received network data panicked in half the moves (bench/hostmoves.py --peer --client:
# 19 of 39), none of 44 with 10.0. Debian 12 gets 10.0 from its backports, which the
# source list below enables for these packages only (apt never prefers backports by itself).
QEMU_MIN="1:10.0"
ensure_qemu() {
  local have
  have=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
  if [ -n "$have" ] && dpkg --compare-versions "$have" ge "$QEMU_MIN" \
      && dpkg --compare-versions "$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || echo 0)" ge "$QEMU_MIN"; then
    return 0
  fi
  local sudo="" target=()
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" \
      | $sudo tee /etc/apt/sources.list.d/onepane-backports.list >/dev/null
    target=(-t bookworm-backports)
  fi
  echo "installing QEMU >= ${QEMU_MIN#1:} ${target[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${target[@]}" \
    qemu-system-x86 qemu-utils >/dev/null
  have=$(dpkg-query -W -f='${Version}' qemu-system-x86)
  dpkg --compare-versions "$have" ge "$QEMU_MIN" || { echo "QEMU $have is older than ${QEMU_MIN#1:}" >&2; return 1; }
}

ensure_vm_host() {
  ensure_qemu
  ensure_debs libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
    libvirt-dev pkg-config gcc python3-dev
  # libvirtd looks this user up before it reads onepane's qemu.conf (which runs QEMU as root).
  id libvirt-qemu >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin --user-group libvirt-qemu
}

config_wants_vm() {
  local cfg="" prev=""
  for arg in "$@"; do
    [ "$prev" = "--config" ] && cfg="$arg"
    case "$arg" in --config=*) cfg="${arg#--config=}" ;; esac
    prev="$arg"
  done
  [ -n "$cfg" ] && [ -f "$cfg" ] && grep -Eq '^[[:space:]]*provider[[:space:]]*=[[:space:]]*"vm"' "$cfg"
}
