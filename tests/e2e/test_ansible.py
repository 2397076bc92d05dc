"""Ansible, the tool most operators drive EC2 with, against onepane's EC2 API (issue 32):
ansible-core and the amazon.aws collection of PyPI's `ansible` package, in a venv of its own,
as conformance/ansible.sh installs it. The playbook makes a VPC, a subnet, a security group,
a key, an instance by exact_count, an attached volume and a snapshot; a second run must
change nothing; a third changes one rule; a fourth deletes it all and nothing of it may be
left."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_ansible_playbook_creates_reruns_changes_and_deletes() -> None:
    r = subprocess.run([str(ROOT / "conformance" / "ansible.sh")], capture_output=True,
                       text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == \
        "RESULT ansible_runs_as_expected 4 count target == 4", r.stdout[-6000:]
