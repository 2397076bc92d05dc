#!/usr/bin/env bash
# Ansible's amazon.aws modules against a fresh onepane's EC2 API: create, re-run (no change),
# change, delete. See conformance/ansible/run.py.
#
# Ansible lives in its own venv (.cache/ansible): ansible-core with the amazon.aws collection
# exactly as PyPI's `ansible` package ships it, taken out of that package's wheel — the whole
# package (~100 collections, ~470 MB installed) took ~30 s of CPU to install for the one
# collection used. Prints each run's counts and, last,
# `RESULT ansible_runs_as_expected N count target == 4`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source conformance/venv.sh
VERSION=${ANSIBLE_VERSION:-12.3.0}  # PyPI's ansible: the amazon.aws collection it ships
CORE=${ANSIBLE_CORE_VERSION:-2.19.14}  # the ansible-core that ansible $VERSION requires
CACHE=$ROOT/.cache/ansible
tool_venv "$CACHE" "$CORE-$VERSION" "ansible-core==$CORE" "boto3==1.44.8"
if [ ! -f "$CACHE/collection-$VERSION" ]; then
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  "$CACHE/venv/bin/pip" download -q --no-deps "ansible==$VERSION" -d "$wheels" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$CACHE/venv/bin/python" - "$wheels"/ansible-"$VERSION"-*.whl <<'PY'
import compileall, sys, sysconfig, zipfile
site = sysconfig.get_paths()["purelib"]
with zipfile.ZipFile(sys.argv[1]) as whl:
    whl.extractall(site, [n for n in whl.namelist()
                          if n.startswith("ansible_collections/amazon/aws/")])
compileall.compile_dir(f"{site}/ansible_collections", quiet=1)
PY
  touch "$CACHE/collection-$VERSION"
fi
[ -z "${ONEPANE_TOOLS_ONLY:-}" ] || exit 0  # ./test installs the tool before the suite
exec "$ROOT/.venv/bin/python" conformance/ansible/run.py --ansible "$CACHE/venv/bin/ansible-playbook"
