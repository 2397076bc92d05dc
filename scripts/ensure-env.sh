#!/usr/bin/env bash
# Shared by ./run and ./test: install what is missing, and only that.
#   ensure_debs PKG...   Debian packages (apt-get), skipped when already installed
#   ensure_venv [EXTRA]  .venv with onepane installed, redone only when pyproject.toml changes
#   ensure_vm_host       QEMU, libvirt (daemons, headers for libvirt-python) and its QEMU user
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

ensure_vm_host() {
  ensure_debs qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
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
