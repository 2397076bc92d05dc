"""A big image import through the CLI, against curl sending the same file to the same server.

A real `onepane up` (its own state directory, loopback). A raw disk of random content (2 GiB
by default) is imported three times through `onepane images import` and three times with
`curl -T` to `POST /v1/catalog` (the reference: the least a client does), alternating, each
with its own name; the figure is the median CLI time over the median curl time. Then the CLI
starts the same import and is killed (SIGKILL) a second into it: the server's CPU seconds in
the 10 s after the kill say whether it goes on working for a client that left.

    .venv/bin/python bench/upload.py [--gib 2]

RESULT upload_vs_curl          median CLI import / median curl upload (target <= 1.2)
RESULT abandoned_upload_cpu_s  server CPU seconds in the 10 s after the client died (target <= 1)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, onepane, result

MIB = 2**20


def make_disk(path: Path, gib: float) -> None:
    with path.open("wb") as f:
        for _ in range(int(gib * 1024)):
            f.write(os.urandom(MIB))


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {r.stdout[-500:]} {r.stderr[-500:]}")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onepane-upload-") as tmp:
        disk = Path(tmp) / "big.raw"
        make_disk(disk, args.gib)
        with onepane(Path(tmp) / "state", "dns_port = 0\n") as (url, token, proc):
            env = {**os.environ, "ONEPANE_URL": url, "ONEPANE_TOKEN": token}
            cli_s, curl_s = [], []
            for n in range(args.rounds):
                curl_s.append(timed(["curl", "-sS", "--fail", "-X", "POST", "-T", str(disk),
                                     "-H", f"Authorization: Bearer {token}",
                                     "-H", "Content-Type: application/octet-stream",
                                     f"{url}/v1/catalog?name=curl-{n}"], env))
                cli_s.append(timed([str(BIN / "onepane"), "-o", "json", "images", "import",
                                    str(disk), "--name", f"cli-{n}"], env))
                print(f"round {n}: curl {curl_s[-1]:.2f} s, CLI {cli_s[-1]:.2f} s", flush=True)
            server = psutil.Process(proc.pid)
            client = subprocess.Popen([str(BIN / "onepane"), "images", "import", str(disk),
                                       "--name", "abandoned"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            client.send_signal(signal.SIGKILL)
            client.wait()
            before = sum(server.cpu_times()[:2])
            time.sleep(10.0)
            abandoned = sum(server.cpu_times()[:2]) - before
            left = list((Path(tmp) / "state" / "blobs").glob(".upload-*"))
            print(f"after the client died: {abandoned:.2f} CPU s in 10 s; scratch left: "
                  f"{len(left)}", flush=True)
    ratio = statistics.median(cli_s) / statistics.median(curl_s)
    print(f"{args.gib} GiB: curl median {statistics.median(curl_s):.2f} s, CLI median "
          f"{statistics.median(cli_s):.2f} s")
    result("upload_vs_curl", ratio, "ratio", "<=", 1.2)
    result("abandoned_upload_cpu_s", abandoned, "s", "<=", 1)


if __name__ == "__main__":
    main()
