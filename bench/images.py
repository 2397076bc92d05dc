"""Import, convert and replicate a disk image to three locations (two data centers and EC2 on
moto's server) through a real `onepane up`, against `qemu-img convert` plus plain copies of
the same data in the same run; and onepane's peak memory, for two image sizes.

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

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import moto_server, onepane, result, three_locations

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


def reference(src: Path, tmp: Path) -> float:
    """What it takes by hand: one conversion for EC2, a plain copy per destination."""
    out = tmp / "ref"
    out.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized",
                    str(src), str(out / "ref.vmdk")], check=True)
    for i in range(3):
        shutil.copyfile(src if i < 2 else out / "ref.vmdk", out / f"copy{i}")
    elapsed = time.perf_counter() - t0
    shutil.rmtree(out)
    return elapsed


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
                t_ref = reference(src, Path(tmp))
                httpx.post(f"{moto}/moto-api/reset")
                t_op, peak = through_onepane(src, Path(tmp), moto)
                rows.append((mib, t_op, t_ref, peak))
    print("import + replicate to dc-a, dc-b (qcow2) and EC2 on moto (vmdk via S3 + AMI), "
          "random data")
    for mib, t_op, t_ref, peak in rows:
        print(f"  {mib:5d} MiB: onepane {t_op:6.2f} s, qemu-img convert + 3 copies "
              f"{t_ref:6.2f} s, ratio {t_op / t_ref:4.2f}; onepane peak RSS {peak / MiB:5.0f} MiB")
    mib, t_op, t_ref, peak = rows[-1]
    print(f"  peak RSS over all sizes: {max(r[3] for r in rows) / MiB:.0f} MiB (target <= 150)")
    result("images_vs_qemu_img_and_copy", t_op / t_ref, "ratio", "<=", 1.3)


if __name__ == "__main__":
    main()
