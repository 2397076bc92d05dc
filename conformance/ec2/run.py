"""Run the EC2 tempest plugin against a fresh onepane (called by conformance/ec2.sh).

onepane runs with two local data centers, one EC2 location on moto's server and (with --ebs)
a vm location. The tests run in two passes, each test counted once:
  1. zone dc-a, image httpecho (an app image: instance-store, as a process has no disk of its
     own) and sizes small/medium, with no EBS image: every test but those that need one;
  2. (--ebs) the tests that need an EBS-backed image — images made from instances, root
     volumes, stopping and resizing EBS instances, volumes attached to them — in zone dc-vm
     with the test guest disk (scripts/build-test-disk.sh) imported and replicated there as
     both images, sizes vm.small/vm.medium. A test skipped in pass 2 keeps its pass 1 result.
Results are grouped per test class; the last line is
`RESULT ec2_tempest_passed N count target >= 100`.
"""

from __future__ import annotations

import argparse
import contextlib
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from onepane.providers.dcnet import CATCH_ALL  # noqa: E402

ONEPANE = Path(sys.executable).parent / "onepane"
MOTO = Path(sys.executable).parent / "moto_server"
TARGET = 100
VM_INDEX = 235  # the vm location's namespace (10.200.235.0/24): no test or bench uses it
# the tests that need an EBS-backed image (skipUnless(CONF.aws.ebs_image_id)), run in pass 2
EBS_TESTS = (r"ec2api_tempest_plugin\.api\.(test_images\.ImageTest\.test_(check_ebs_image_"
             r"type|check_ebs_image_volume_properties|create_image_from_ebs_instance|check_"
             r"simple_image_attributes|check_bdm_in_image|check_launch_permission_attribute)"
             r"|test_instances_ebs\."
             r"|test_instance_attributes\.InstanceAttributeTest\.test_(describe_instance_"
             r"attributes|instance_type_attribute)|test_instances\.InstanceTest\.test_stop_"
             r"instance|test_volumes\.VolumeTest\.test_(attach_detach_volume|attaching_stage"
             r"|delete_detach_attached_volume))")
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


def tempest_conf(ws: Path, port: int, key: dict[str, str], zone: str, image: str,
                 ebs_image: str, sizes: tuple[str, str]) -> Path:
    """A tempest workspace (what `tempest init` writes, without registering it in ~/.tempest)
    and its configuration."""
    for d in ("etc", "tempest_lock", "logs"):
        (ws / d).mkdir(parents=True)
    conf = ws / "etc" / "tempest.conf"
    conf.write_text(f"""[DEFAULT]
log_file = tempest.log
[oslo_concurrency]
lock_path = {ws}/tempest_lock
[aws]
ec2_url = http://127.0.0.1:{port}/ec2/
aws_access = {key['access_key_id']}
aws_secret = {key['secret_access_key']}
aws_region = onepane
aws_zone = {zone}
image_id = {image}
ebs_image_id = {ebs_image}
instance_type = {sizes[0]}
instance_type_alt = {sizes[1]}
run_ssh = False
# the plugin's "incompatible" tests are those of AWS behaviour OpenStack's EC2 API lacks
# (volume status, encrypted volumes, EC2's own error codes): onepane answers as AWS does
run_incompatible_tests = True
build_timeout = 120
[service_available]
ec2api = True
""")
    return conf


def run_tempest(tempest: str, ws: Path, conf: Path, regex: str, concurrency: int
                ) -> dict[str, tuple[str, str]]:
    """test id -> (its class, ok | FAILED | SKIPPED)."""
    pkg = subprocess.run([str(Path(tempest).with_name("python")), "-c",
                          "import tempest, os; print(os.path.dirname(tempest.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (ws / ".stestr.conf").write_text(f"[DEFAULT]\ntest_path={pkg}/test_discover\n"
                                     f"top_dir={pkg}\ngroup_regex=([^\\.]*\\.)*\n")
    run = subprocess.run([tempest, "run", "--config-file", str(conf), "--regex", regex,
                          "--concurrency", str(concurrency)], cwd=ws, capture_output=True,
                         text=True, timeout=3000)
    if os.environ.get("ONEPANE_TEMPEST_VERBOSE"):  # each failure's traceback, for debugging
        print(run.stdout)
    out = {}
    for line in run.stdout.splitlines():
        m = LINE.match(line)
        if m:
            name, status = m.groups()
            cls = name.rsplit(".", 1)[0] if ".test_" in name else name
            out[name] = (cls, status)
    return out


def guest_image(api: httpx.Client, work: Path, location: str) -> str:
    """The test guest disk in the catalog, ready at `location`."""
    subprocess.run([str(ROOT / "scripts" / "build-test-disk.sh"), str(work / "guest")],
                   check=True, capture_output=True, timeout=300)
    disk = work / "guest" / "guest.qcow2"
    with disk.open("rb") as f:
        img = api.post("/v1/catalog", params={"name": "guest"}, content=f.read(),
                       timeout=300).json()
    api.post(f"/v1/catalog/{img['id']}/replicate", json={"to": [location]}).raise_for_status()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        reps = api.get(f"/v1/catalog/{img['id']}").json()["replicas"]
        if any(r["location"] == location and r["state"] == "ready" for r in reps):
            return str(img["id"])
        time.sleep(0.5)
    raise SystemExit(f"the guest image did not become ready at {location}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tempest", required=True)
    ap.add_argument("--regex", default="ec2api_tempest_plugin.api")
    ap.add_argument("--target", type=int, default=TARGET)
    ap.add_argument("--concurrency", type=int, default=2,
                    help="tempest workers (its tests are written to run in parallel)")
    ap.add_argument("--ebs", action="store_true",
                    help="run the tests that need an EBS-backed image at a vm location")
    args = ap.parse_args()
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    results: dict[str, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="onepane-ec2-") as tmp:
        work = Path(tmp)
        moto_port, port = free_port(), free_port()
        moto = subprocess.Popen([str(MOTO), "-p", str(moto_port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        vm = (f'[locations.dc-vm]\nprovider = "vm"\noptions = {{ index = {VM_INDEX}, '
              'stop_timeout = 5 }\n') if args.ebs else ""
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
{vm}""")
        log = (work / "onepane.log").open("wb")
        server = subprocess.Popen([str(ONEPANE), "up", "--config", str(work / "onepane.toml"),
                                   "--port", str(port), "--state-dir", str(work / "state")],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait(f"http://127.0.0.1:{moto_port}/", moto, "moto_server")
            wait(f"http://127.0.0.1:{port}/healthz", server, "onepane")
            token = (work / "state" / "admin.token").read_text().strip()
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                               headers={"Authorization": f"Bearer {token}"})
            key = api.post("/v1/access-keys", json={"name": "tempest", "role": "admin"}).json()
            conf = tempest_conf(work / "ws1", port, key, "dc-a", "httpecho", "",
                                ("small", "medium"))
            results = run_tempest(args.tempest, work / "ws1", conf, args.regex,
                                  args.concurrency)
            if args.ebs:
                image = guest_image(api, work, "dc-vm")
                conf = tempest_conf(work / "ws2", port, key, "dc-vm", image, image,
                                    ("vm.small", "vm.medium"))
                both = f"^(?=.*(?:{args.regex}))(?=.*(?:{EBS_TESTS}))"
                for name, got in run_tempest(args.tempest, work / "ws2", conf, both,
                                             args.concurrency).items():
                    if got[1] != "SKIPPED" or name not in results:
                        results[name] = got
        finally:
            server.terminate()
            moto.terminate()
            server.wait(30)
            moto.wait(30)
            subprocess.run([str(ONEPANE), "down", "--yes", "--state-dir", str(work / "state")],
                           capture_output=True, check=False)
            if args.ebs:
                from onepane.providers.vm.provider import VmProvider
                with contextlib.suppress(Exception):
                    VmProvider("dc-vm", work / "state", {"index": VM_INDEX}).teardown()
            if not had_catch_all:
                subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)
            log.close()
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"ok": 0, "FAILED": 0, "SKIPPED": 0})
    failed = []
    for name, (cls, status) in sorted(results.items()):
        per[cls.replace("ec2api_tempest_plugin.api.", "")][status] += 1
        if status == "FAILED":
            failed.append(name.replace("ec2api_tempest_plugin.api.", ""))
    print(f"{'class':55} {'pass':>5} {'fail':>5} {'skip':>5}")
    for cls in sorted(per):
        c = per[cls]
        print(f"{cls:55} {c['ok']:5} {c['FAILED']:5} {c['SKIPPED']:5}")
    for name in failed:
        print(f"failed: {name}")
    passed = sum(c["ok"] for c in per.values())
    print(json.dumps({k: sum(c[k] for c in per.values()) for k in ("ok", "FAILED", "SKIPPED")}))
    print(f"RESULT ec2_tempest_passed {passed} count target >= {args.target}")
    return 0 if passed >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
