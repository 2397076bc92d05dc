"""Import, convert and replicate a disk image to three locations (two data centers and EC2 on
moto's server) through a real `onepane up`, against `qemu-img convert` plus a plain copy of the
same data to each destination, in the same run; and onepane's peak memory, for two image sizes.

The reference does by hand what the destinations need: one conversion (to the
streamOptimized VMDK EC2 imports), a file copy of the qcow2 into each data center, and one PUT
of the VMDK into moto's S3 (boto3, the plain copy to that destination). The reference with
three *local* file copies is printed too: it leaves out the S3 transfer, which onepane cannot.
moto builds its AMI catalog on the first DescribeImages (about 2 s); that is done before timing.

    .venv/bin/python bench/images.py [--sizes 256,1024]   (MiB)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import moto_server, onepane, result, three_locations
from onepane.images import inspect

MiB = 2**20


def make_source(tmp: Path, mib: int) -> Path:
    raw = tmp / "src.raw"
    with raw.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))  # incompressible: the worst case for every step
    src = tmp / "src.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(src)],
                   check=True)
    raw.unlink()
    return src


def reference(src: Path, tmp: Path, moto: str) -> tuple[float, float]:
    """What it takes by hand: one conversion for EC2, then a plain copy to each destination
    (two files, one S3 PUT). Also returns the time with a local file copy in place of the PUT."""
    out = tmp / "ref"
    out.mkdir()
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")
    s3.create_bucket(Bucket="reference")
    t0 = time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized",
                    str(src), str(out / "ref.vmdk")], check=True)
    for i in range(2):
        shutil.copyfile(src, out / f"copy{i}")
    t_files = time.perf_counter() - t0
    t1 = time.perf_counter()
    shutil.copyfile(out / "ref.vmdk", out / "copy2")
    t_local = time.perf_counter() - t1
    t2 = time.perf_counter()
    with (out / "ref.vmdk").open("rb") as f:
        s3.put_object(Bucket="reference", Key="ref.vmdk", Body=f)
    t_put = time.perf_counter() - t2
    shutil.rmtree(out)
    return t_files + t_put, t_files + t_local


def warm_moto(moto: str) -> None:
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="k",
                       aws_secret_access_key="s")
    ec2.describe_images(Owners=["self"])


def through_onepane(src: Path, tmp: Path, moto: str) -> tuple[float, int]:
    config = three_locations(moto)
    with onepane(tmp / "state", config) as (url, token, proc):
        server = psutil.Process(proc.pid)
        peak = [server.memory_info().rss]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.02)
        sampler = threading.Thread(target=sample)
        sampler.start()
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                            timeout=600)
        t0 = time.perf_counter()
        with src.open("rb") as f:
            r = http.post("/v1/catalog", params={"name": "bench"}, content=f)
        r.raise_for_status()
        img = r.json()["id"]
        http.post(f"/v1/catalog/{img}/replicate",
                  json={"to": ["dc-a", "dc-b", "aws"]}).raise_for_status()
        while True:
            reps = http.get(f"/v1/catalog/{img}").json()["replicas"]
            if all(x["state"] in ("ready", "failed") for x in reps) and len(reps) == 3:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        failed = [x for x in reps if x["state"] != "ready"]
        if failed:
            raise SystemExit(f"replication failed: {failed}")
    return elapsed, peak[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024")
    args = ap.parse_args()
    rows = []
    with moto_server() as moto:
        for mib in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="onepane-bench-", dir="/var/tmp") as tmp:
                src = make_source(Path(tmp), mib)
                t_ref, t_local = reference(src, Path(tmp), moto)
                httpx.post(f"{moto}/moto-api/reset")
                warm_moto(moto)
                t_op, peak = through_onepane(src, Path(tmp), moto)
                t0 = time.perf_counter()
                inspect.check(src)  # what every import now does first, timed on its own
                t_inspect = time.perf_counter() - t0
                rows.append((mib, t_op, t_ref, t_local, peak, t_inspect))
    print("import + replicate to dc-a, dc-b (qcow2) and EC2 on moto (vmdk via S3 + AMI), "
          "random data")
    for mib, t_op, t_ref, t_local, peak, t_inspect in rows:
        print(f"  {mib:5d} MiB: onepane {t_op:6.2f} s; qemu-img convert + a copy to each "
              f"destination {t_ref:6.2f} s, ratio {t_op / t_ref:4.2f}; with 3 local copies "
              f"instead {t_local:6.2f} s, ratio {t_op / t_local:4.2f}; "
              f"onepane peak RSS {peak / MiB:5.0f} MiB; disk inspection "
              f"{t_inspect * 1000:.0f} ms = {100 * t_inspect / t_op:.2f} % of it (target <= 5 %)")
    print(f"  peak RSS over all sizes: {max(r[4] for r in rows) / MiB:.0f} MiB (target <= 150)")
    mib, t_op, t_ref = rows[-1][:3]
    result("images_vs_qemu_img_and_copy", t_op / t_ref, "ratio", "<=", 1.3)


if __name__ == "__main__":
    main()
