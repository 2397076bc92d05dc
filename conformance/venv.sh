# Sourced by the conformance scripts: each outside tool lives in a venv of its own under .cache,
# made once per pinned version (the `ready-<version>` mark says the install finished).
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# tool_venv CACHE VERSION PIP-ARGS...: the venv at CACHE/venv with PIP-ARGS installed.
tool_venv() {
  local cache=$1 version=$2
  shift 2
  if [ ! -f "$cache/ready-$version" ]; then
    rm -rf "$cache" && "$PY" -m venv "$cache/venv"
    # --no-compile: byte-compiling every module of a tool (ansible ships thousands) was half
    # of the install; Python compiles the few a run imports as it imports them.
    "$cache/venv/bin/pip" install -q --no-compile "$@" 2>&1 | grep -v "^WARNING: Location" || true
    touch "$cache/ready-$version"
  fi
}
