"""Drive a fresh onepane's EC2 API with Ansible's amazon.aws modules (called by
conformance/ansible.sh, and by tests/e2e/test_ansible.py).

onepane runs with two local data centers (zones dc-a, dc-b). playbook.yml runs four times:
`create` (a VPC, a subnet, a security group, a key, an instance by exact_count, a volume attached
to it, a snapshot), `again` (the same: nothing may change, as every module's idempotence
promises), `change` (one more rule in the group: exactly that task changes), `delete` (all of
it, in reverse; onepane must hold nothing of it afterwards). Each run's PLAY RECAP is printed;
the last line is `RESULT ansible_runs_as_expected N count target == 4`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ONEPANE = Path(sys.executable).parent / "onepane"
RECAP = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
STEPS = ("create", "again", "change", "delete")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("onepane exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("onepane did not start")


def playbook(ansible: Path, step: str, extra: dict[str, str], work: Path) -> tuple[str, int, int]:
    """One run: its output, changed and failed counts (from the PLAY RECAP)."""
    env = {**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_PYTHON_INTERPRETER": str(ansible.with_name("python")),
           "ANSIBLE_HOME": str(work / "ansible-home"), "ANSIBLE_STDOUT_CALLBACK": "default",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    run = subprocess.run([str(ansible), "-i", "localhost,", str(HERE / "playbook.yml"),
                          "-e", json.dumps({**extra, "step": step}), "-v"],
                         capture_output=True, text=True, env=env, timeout=900)
    m = RECAP.search(run.stdout)
    changed, failed = (int(m.group(2)), int(m.group(4))) if m else (-1, 1)
    return run.stdout + run.stderr, changed, failed


def leftovers(extra: dict[str, str]) -> dict[str, list[str]]:
    """What the playbook made that is still there (after `delete`: nothing may be), asked
    through the same EC2 API with boto3."""
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=extra["endpoint"], region_name="onepane",
                       aws_access_key_id=extra["access_key"],
                       aws_secret_access_key=extra["secret_key"])
    named = [{"Name": "tag:Name", "Values": ["onepane-ansible*"]}]
    return {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=named)["Vpcs"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=named)["Subnets"]],
        "groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=[
            {"Name": "group-name", "Values": ["onepane-ansible-web"]}])["SecurityGroups"]],
        "keys": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=[
            {"Name": "key-name", "Values": ["onepane-ansible"]}])["KeyPairs"]],
        "instances": [i["InstanceId"] for r in ec2.describe_instances(Filters=[*named, {
            "Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}])[
                "Reservations"] for i in r["Instances"]],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=named)["Volumes"]],
        "addresses": [a["AllocationId"] for a in ec2.describe_addresses(Filters=named)[
            "Addresses"]],
        "interfaces": [n["NetworkInterfaceId"] for n in ec2.describe_network_interfaces(
            Filters=named)["NetworkInterfaces"]],
        "snapshots": [s["SnapshotId"] for s in ec2.describe_snapshots(Filters=named)[
            "Snapshots"]]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ansible", required=True, help="ansible-playbook of the Ansible venv")
    args = ap.parse_args()
    ansible = Path(args.ansible)
    ok = 0
    with tempfile.TemporaryDirectory(prefix="onepane-ansible-") as tmp:
        work = Path(tmp)
        port = free_port()
        (work / "onepane.toml").write_text('dns_port = 0\n[locations.dc-a]\nprovider = "local"\n'
                                           '[locations.dc-b]\nprovider = "local"\n')
        log = (work / "onepane.log").open("wb")
        server = subprocess.Popen([str(ONEPANE), "up", "--config", str(work / "onepane.toml"),
                                   "--port", str(port), "--state-dir", str(work / "state")],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait(f"http://127.0.0.1:{port}/healthz", server)
            token = (work / "state" / "admin.token").read_text().strip()
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                               headers={"Authorization": f"Bearer {token}"})
            key = api.post("/v1/access-keys", json={"name": "ansible", "role": "operator"}).json()
            extra = {"endpoint": f"http://127.0.0.1:{port}/ec2/",
                     "access_key": key["access_key_id"], "secret_key": key["secret_access_key"]}
            for step in STEPS:
                t0 = time.monotonic()
                out, changed, failed = playbook(ansible, step, extra, work)
                took = time.monotonic() - t0
                want = {"create": changed > 0, "again": changed == 0,
                        "change": changed == 1, "delete": changed > 0}[step]
                good = failed == 0 and want
                if step == "create":  # each kind made, and found by the check below
                    made = leftovers(extra)
                    print(f"made: {json.dumps(made)}")
                    good = good and all(len(v) == 1 for v in made.values())
                ok += good
                print(f"{step:7} changed={changed} failed={failed} "
                      f"{'ok' if good else 'NOT AS EXPECTED'} ({took:.1f} s)")
                if not good or os.environ.get("ONEPANE_ANSIBLE_VERBOSE"):
                    print("\n".join("  " + line for line in out.splitlines()
                                     if "ryptography" not in line))
            left = leftovers(extra)
            print(f"left after delete: {json.dumps(left)}")
            if any(left.values()):
                ok -= 1
        finally:
            server.terminate()
            server.wait(30)
            subprocess.run([str(ONEPANE), "down", "--yes", "--state-dir", str(work / "state")],
                           capture_output=True, check=False)
            log.close()
    print(f"RESULT ansible_runs_as_expected {ok} count target == {len(STEPS)}")
    return 0 if ok == len(STEPS) else 1


if __name__ == "__main__":
    sys.exit(main())
