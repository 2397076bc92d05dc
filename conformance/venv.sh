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
    "$cache/venv/bin/pip" install -q "$@" 2>&1 | grep -v "^WARNING: Location" || true
    touch "$cache/ready-$version"
  fi
}
