#!/usr/bin/env bash
# Ansible's amazon.aws modules (in PyPI's ansible package) against a fresh onepane's EC2 API:
# create, re-run (no change), change, delete. See conformance/ansible/run.py.
#
# Ansible lives in its own venv (.cache/ansible). Prints each run's counts and, last,
# `RESULT ansible_runs_as_expected N count target == 4`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source conformance/venv.sh
VERSION=${ANSIBLE_VERSION:-12.3.0}
CACHE=$ROOT/.cache/ansible
tool_venv "$CACHE" "$VERSION" "ansible==$VERSION" "boto3==1.44.8"
exec "$ROOT/.venv/bin/python" conformance/ansible/run.py --ansible "$CACHE/venv/bin/ansible-playbook"
