"""Host maintenance as operators run it: a hypervisor host with 4 VMs emptied under load.

Three hypervisor hosts that onepane reaches only over TCP (onepane.providers.vm.hostlab: each a
namespace with its own mount namespace, libvirtd and disks). Four VMs (the test guest, TCG) are
placed on host h1, then h1 is emptied: every VM moves live to h2/h3 (libvirt peer-to-peer over
TCP, disks copied over NBD, at most 2 moves at once), while each VM takes 25 requests a second
open loop (in processes of their own, straight to the guest's address, pooled keep-alive
connections) and holds one long response open (a connection that must survive its move).
Reference, same run: the same load for the same time with no move.

    .venv/bin/python bench/hosts.py [--vms 4]

RESULT host_evacuation_s        maintenance start -> h1 empty (target <= 60 on 2 cores, TCG)
RESULT host_move_downtime_ms    median QEMU downtime of the moves (target <= 100)
RESULT host_move_failed         failed requests + broken long responses (target 0)
RESULT host_failure_recovery_s  host cut -> its VMs answer elsewhere (target <= 30)

The last figure: two VMs whose disks are on the lab's network storage (a storage host's NBD
export) run on one host; its libvirtd is killed and its link cut; onepane's failure watch (the
same calls the leader's loop makes, once a second, host_dead_after 5 s) declares it dead,
fences it and starts both VMs on the other hosts; the clock stops when both answer HTTP at
their addresses again (detection + fencing + a TCG boot).
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import answers_http as _answers
from bench.common import result
from bench.common import wait_until as _wait
from onepane.providers.base import InstanceSpec
from onepane.providers.vm.hostfailure import HostFailures
from onepane.providers.vm.hostlab import HostLab, host_lab
from onepane.providers.vm.hosts import HostsProvider
from onepane.traffic.drill import LongResponse
from onepane.traffic.openloop import load_shots

HOSTS = {"bh1": 224, "bh2": 225, "bh3": 226}
STORAGE = ("bst", 227)
DEAD_AFTER_S = 5.0
ROOT = Path(__file__).resolve().parent.parent


def loads(addresses: list[str], rate: float, out: Path, tag: str) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-m", "onepane.traffic.openloop", f"http://{a}/",
                              str(out / f"{tag}-{n}.json"), str(rate)])
            for n, a in enumerate(addresses)]


def stop(procs: list[subprocess.Popen[bytes]], out: Path, tag: str) -> tuple[int, int]:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(30)
    shots = [s for n in range(len(procs)) for s in load_shots(str(out / f"{tag}-{n}.json")).shots]
    return len(shots), sum(1 for s in shots if s.status != 200)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=4)
    ap.add_argument("--rate", type=float, default=25, help="requests a second per VM")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        guest = out / "guest"
        subprocess.run([str(ROOT / "scripts" / "build-test-disk.sh"), str(guest)], check=True,
                       capture_output=True)
        disk = guest / "guest.qcow2"
        with host_lab(HOSTS, storage=STORAGE) as lab:  # TLS, as real hosts speak
            p = HostsProvider("bench-hosts", out / "state", {"hosts": lab.specs()},
                              lab.credentials())
            p.setup()
            img = p.import_disk("img-bench", "guest", disk, "qcow2",
                                hashlib.sha256(disk.read_bytes()).hexdigest(), lambda f: None)
            first = "bh1"
            for other in ("bh2", "bh3"):
                p.roster.set_maintenance(other, True)  # so that every VM lands on the first host
            vms = [p.create_instance(InstanceSpec(onepane_id=f"inst-b{n}", name=f"b{n}",
                                                  image=img, size="vm.tiny"))
                   for n in range(args.vms)]
            for other in ("bh2", "bh3"):
                p.roster.set_maintenance(other, False)
            addresses = [v.addresses[0] for v in vms]
            assert all(v.tags["onepane:host"] == first for v in vms)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if all(_answers(a) for a in addresses):
                    break
                time.sleep(0.5)
            else:
                raise SystemExit("the guests did not boot")
            print(f"{args.vms} VMs on {first} answering", flush=True)

            window = 25.0
            ref = loads(addresses, args.rate, out, "ref")
            time.sleep(window)
            ref_n, ref_failed = stop(ref, out, "ref")

            load = loads(addresses, args.rate, out, "move")
            streams = [LongResponse(a, 80, 300) for a in addresses]  # 30 s of lines each
            time.sleep(2)
            for s in streams:
                s.start()
            time.sleep(1)
            downtimes: list[float] = []
            t0 = time.monotonic()
            summary = p.evacuate(first, on_move=lambda i, d, ph: downtimes.append(
                float((ph.get("switchover") or {}).get("downtime_ms") or 0)) if d else None)
            evac_s = time.monotonic() - t0
            for s in streams:
                s.join(60)
            time.sleep(2)
            n, failed = stop(load, out, "move")
            broken = sum(1 for s in streams if s.broken)
            print(f"evacuation: {summary}")
            print(f"moves' QEMU downtime ms: {sorted(downtimes)}; emptied in {evac_s:.1f} s; "
                  f"requests {n}, failed {failed}; long responses broken {broken} of "
                  f"{len(streams)}; reference with no move: {ref_n} requests, {ref_failed} failed")
            for v in vms:
                p.destroy_instance(v.provider_id)
            p.close()
            recovery_s = host_failure(lab, out, disk)
    result("host_evacuation_s", evac_s, "s", "<=", 60)
    result("host_move_downtime_ms", statistics.median(downtimes) if downtimes else float("nan"),
           "ms", "<=", 100)
    result("host_move_failed", failed + broken, "requests+connections", "==", 0)
    result("host_failure_recovery_s", recovery_s, "s", "<=", 30)


def host_failure(lab: HostLab, out: Path, disk: Path) -> float:
    """Two VMs on network storage on bh2; bh2 dies; seconds until both answer elsewhere."""
    assert lab.storage is not None
    p = HostsProvider("bench-shared", out / "state", {
        "hosts": lab.specs(), "storage": lab.storage.options(),
        "host_dead_after": DEAD_AFTER_S}, lab.credentials())
    p.setup()
    img = p.import_disk("img-bench", "guest", disk, "qcow2",
                        hashlib.sha256(disk.read_bytes()).hexdigest(), lambda f: None)
    victim = next(h for h in lab.hosts if h.name == "bh2")
    for other in ("bh1", "bh3"):
        p.roster.set_maintenance(other, True)
    vms = [p.create_instance(InstanceSpec(onepane_id=f"inst-ha{n}", name=f"ha{n}", image=img,
                                          size="vm.tiny")) for n in range(2)]
    for other in ("bh1", "bh3"):
        p.roster.set_maintenance(other, False)
    addresses = [v.addresses[0] for v in vms]
    _wait(lambda: all(_answers(a) for a in addresses), 180, "the guests did not boot")
    p.list_instances()  # what the failure watch knows of where VMs run
    victim.kill_daemon()
    victim.cut("silent")
    t0 = time.monotonic()
    try:
        failures = HostFailures(p)
        while victim.name not in failures.dead():
            if time.monotonic() - t0 > 120:
                raise SystemExit("the host was not declared dead")
            time.sleep(1.0)  # the leader's loop's pace
        detected = time.monotonic() - t0
        failures.fence(victim.name)
        recovery = failures.recover(victim.name)
        _wait(lambda: all(_answers(a) for a in addresses), 180, "the VMs did not come back")
        recovery_s = time.monotonic() - t0
        print(f"host failure: dead after {detected:.1f} s, {recovery.as_dict()}, answering "
              f"after {recovery_s:.1f} s", flush=True)
    finally:
        victim.restore()
        victim.hypervisor.start()
    removed = HostFailures(p).readmit(victim.name)
    print(f"{victim.name} readmitted; stale copies removed: {removed}")
    for v in vms:
        p.destroy_instance(v.provider_id)
    p.close()
    return recovery_s


if __name__ == "__main__":
    main()
