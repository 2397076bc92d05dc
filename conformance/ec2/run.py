"""Run the EC2 tempest plugin against a fresh onepane (called by conformance/ec2.sh).

onepane runs with its default local data centers and one EC2 location on moto's server; the
tests use zone dc-a, image httpecho (an app image every process data center has) as both the
plain and the EBS image, and sizes small/medium. One test at a time: subnets of different VPCs
in one zone are onepane networks of one location, whose address plans may not overlap, and two
tests at once pick overlapping ones. Results are grouped per test class; the last
line is `RESULT ec2_tempest_passed N count target >= 100`.
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
from collections import defaultdict
from pathlib import Path

import httpx

ONEPANE = Path(sys.executable).parent / "onepane"
MOTO = Path(sys.executable).parent / "moto_server"
TARGET = 100
LINE = re.compile(r"^\{\d+\} (?:setUpClass \()?(ec2api_tempest_plugin\.[\w.]+?)\)?"
                  r"(?: \[[\d.]+s\])? \.\.\. (ok|FAILED|SKIPPED)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tempest", required=True)
    ap.add_argument("--regex", default="ec2api_tempest_plugin.api")
    ap.add_argument("--target", type=int, default=TARGET)
    ap.add_argument("--concurrency", type=int, default=2,
                    help="tempest workers (its tests are written to run in parallel)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onepane-ec2-") as tmp:
        work = Path(tmp)
        moto_port, port = free_port(), free_port()
        moto = subprocess.Popen([str(MOTO), "-p", str(moto_port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        (work / "onepane.toml").write_text(f"""
dns_port = 0
[locations.dc-a]
provider = "local"
[locations.dc-b]
provider = "local"
[locations.aws-us-east-1]
provider = "cloud"
driver = "ec2-compat"
region = "us-east-1"
credentials = {{ key = "testing", secret = "testing" }}
options = {{ host = "127.0.0.1", port = {moto_port}, secure = false }}
""")
        log = (work / "onepane.log").open("wb")
        server = subprocess.Popen([str(ONEPANE), "up", "--config", str(work / "onepane.toml"),
                                   "--port", str(port), "--state-dir", str(work / "state")],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait(f"http://127.0.0.1:{moto_port}/", moto, "moto_server")
            wait(f"http://127.0.0.1:{port}/healthz", server, "onepane")
            token = (work / "state" / "admin.token").read_text().strip()
            key = httpx.post(f"http://127.0.0.1:{port}/v1/access-keys",
                             json={"name": "tempest", "role": "admin"},
                             headers={"Authorization": f"Bearer {token}"}).json()
            ws = work / "ws"
            for d in ("etc", "tempest_lock", "logs"):
                (ws / d).mkdir(parents=True)
            # what `tempest init` writes, without registering a workspace in ~/.tempest
            pkg = subprocess.run([str(Path(args.tempest).with_name("python")), "-c",
                                  "import tempest, os; print(os.path.dirname(tempest.__file__))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            (ws / ".stestr.conf").write_text(f"[DEFAULT]\ntest_path={pkg}/test_discover\n"
                                             f"top_dir={pkg}\ngroup_regex=([^\\.]*\\.)*\n")
            (ws / "etc" / "tempest.conf").write_text(f"""[DEFAULT]
log_file = tempest.log
[oslo_concurrency]
lock_path = {ws}/tempest_lock
[aws]
ec2_url = http://127.0.0.1:{port}/ec2/
aws_access = {key['access_key_id']}
aws_secret = {key['secret_access_key']}
aws_region = onepane
aws_zone = dc-a
image_id = httpecho
ebs_image_id = httpecho
instance_type = small
instance_type_alt = medium
run_ssh = False
# the plugin's "incompatible" tests are those of AWS behaviour OpenStack's EC2 API lacks
# (volume status, encrypted volumes, EC2's own error codes): onepane answers as AWS does
run_incompatible_tests = True
build_timeout = 60
[service_available]
ec2api = True
""")
            run = subprocess.run([args.tempest, "run", "--config-file",
                                  str(ws / "etc" / "tempest.conf"), "--regex", args.regex,
                                  "--concurrency", str(args.concurrency)], cwd=ws,
                                 capture_output=True, text=True, timeout=3000)
        finally:
            server.terminate()
            moto.terminate()
            server.wait(30)
            moto.wait(30)
            subprocess.run([str(ONEPANE), "down", "--yes", "--state-dir", str(work / "state")],
                           capture_output=True, check=False)
            log.close()
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"ok": 0, "FAILED": 0, "SKIPPED": 0})
    failed = []
    for line in run.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, status = m.groups()
        cls = name.rsplit(".", 1)[0] if ".test_" in name else name
        per[cls.replace("ec2api_tempest_plugin.api.", "")][status] += 1
        if status == "FAILED":
            failed.append(name.replace("ec2api_tempest_plugin.api.", ""))
    print(f"{'class':55} {'pass':>5} {'fail':>5} {'skip':>5}")
    for cls in sorted(per):
        c = per[cls]
        print(f"{cls:55} {c['ok']:5} {c['FAILED']:5} {c['SKIPPED']:5}")
    for name in failed:
        print(f"failed: {name}")
    if os.environ.get("ONEPANE_TEMPEST_VERBOSE"):  # each failure's traceback, for debugging
        print(run.stdout)
    passed = sum(c["ok"] for c in per.values())
    print(json.dumps({k: sum(c[k] for c in per.values()) for k in ("ok", "FAILED", "SKIPPED")}))
    print(f"RESULT ec2_tempest_passed {passed} count target >= {args.target}")
    return 0 if passed >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
