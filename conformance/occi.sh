#!/usr/bin/env bash
# OCCI conformance: CESNET's compliance tool pOCCI 1.0.3 (the ETSI TS 103 142 interoperability
# tests) in text/plain and text/occi against fresh onepane servers, and every kind of JSON
# document onepane writes checked against conformance/occi/occi-json.schema.json (GFD.226).
#
#   conformance/occi.sh            (after ./run or ./test has made .venv)
#
# pOCCI is Python 2 code. It lives in its own venv (.cache/pocci): fetched from PyPI by pip
# (hash-checked), converted with 2to3, and patched by conformance/occi/patch_pocci.py only where
# Python 3.11 rejects it, plus a bearer-token option. The last line is
# `RESULT occi_pocci_passed N count target >= 26` (14 tests x 2 renderings).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=$ROOT/.cache/pocci
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -f "$CACHE/ready-1.0.3" ]; then
  rm -rf "$CACHE" && mkdir -p "$CACHE/dl"
  "$PY" -m venv "$CACHE/venv"
  # setuptools < 58 and an old wheel: pOCCI's setup.py still says use_2to3, which pip must
  # read to download it; a stand-in pypandoc keeps setup.py from opening a README it lacks.
  "$CACHE/venv/bin/pip" install -q "setuptools==57.5.0" "wheel==0.41.3" "pycurl==7.49.0" \
    2>&1 | grep -v "^WARNING: Location" || true
  SITE=$("$CACHE/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  printf 'def convert(*args, **kwargs):\n    return "pOCCI"\n' > "$SITE/pypandoc.py"
  echo "pOCCI==1.0.3 --hash=sha256:f8db7fe143b067e9fec354303fe539518ade0de949a0c3284490d3ab6834d8a4" \
    > "$CACHE/requirements.txt"
  "$CACHE/venv/bin/pip" download -q --no-deps --no-build-isolation --no-binary :all: \
    --require-hashes -r "$CACHE/requirements.txt" -d "$CACHE/dl" 2>&1 | grep -v "^WARNING: Location" || true
  tar -xzf "$CACHE/dl/pOCCI-1.0.3.tar.gz" -C "$CACHE"
  "$CACHE/venv/bin/python" -m lib2to3 -w -n "$CACHE/pOCCI-1.0.3/pOCCI" >/dev/null 2>&1
  "$CACHE/venv/bin/python" conformance/occi/patch_pocci.py "$CACHE/pOCCI-1.0.3/pOCCI"
  touch "$CACHE/ready-1.0.3"
fi
exec "$ROOT/.venv/bin/python" conformance/occi/run.py --pocci-python "$CACHE/venv/bin/python" \
  --pocci-src "$CACHE/pOCCI-1.0.3"
