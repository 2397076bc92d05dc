#!/usr/bin/env bash
# EC2 conformance: OpenStack's EC2 API tests (PyPI ec2api-tempest-plugin 1.7.0 with tempest
# 47.0.0) against a fresh onepane with local data centers (dc-a, dc-b), EC2 on moto's server
# and a vm location (dc-vm: libvirt/QEMU, as ./test installs them) for the tests that need an
# EBS-backed image (EC2_EBS=0 leaves it out; those tests are then skipped).
#
#   conformance/ec2.sh [REGEX]     default: every API test (ec2api_tempest_plugin.api)
#
# tempest lives in its own venv (.cache/ec2-tempest). Prints pass/fail/skip per class and,
# last, `RESULT ec2_tempest_passed N count target >= 100`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source conformance/venv.sh
CACHE=$ROOT/.cache/ec2-tempest
tool_venv "$CACHE" 1.7.0 "ec2api-tempest-plugin==1.7.0" "tempest==47.0.0"
[ -z "${ONEPANE_TOOLS_ONLY:-}" ] || exit 0  # ./test installs the tool before the suite
exec "$ROOT/.venv/bin/python" conformance/ec2/run.py --tempest "$CACHE/venv/bin/tempest" \
  --regex "${1:-ec2api_tempest_plugin.api}" --target "${EC2_TARGET:-100}" \
  $([ "${EC2_EBS:-1}" = 0 ] || echo --ebs)
