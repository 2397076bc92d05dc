"""Live mobility under load: a running VM moved between two VM data centers, again and again,
while an open-loop client sends requests through the deployment's data plane and long-lived
keep-alive connections stay open across every move. Needs root (namespaces, libvirt).

Per move it prints QEMU's downtime, the move's total time, the requests that failed and the
long-lived connections that broke. The reference, measured in the same run, is the same load
over a quiet period of the same length with no move.

    .venv/bin/python bench/mobility.py [--moves 5] [--rate 200] [--keepalive 4]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, onepane, percentile, result
from onepane.providers.dcnet import CATCH_ALL
from onepane.providers.vm.provider import VmProvider

ROOT = Path(__file__).resolve().parent.parent
LOCS = {"bench-vm-a": 247, "bench-vm-b": 248}


class OpenLoop:
    """Requests at a fixed rate whatever the answers do (a closed loop would slow down with
    the server and hide the outage)."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.samples: list[tuple[float, float, bool]] = []  # start, seconds, ok
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=64)
        self.thread = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> OpenLoop:
        self.thread.start()
        return self

    def _schedule(self) -> None:
        t0, n = time.monotonic(), 0
        while not self.stop.is_set():
            n += 1
            delay = t0 + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.pool.submit(self._one)

    def _one(self) -> None:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=30)
        start = time.monotonic()
        try:
            r = client.get(self.url)
            ok = r.status_code == 200
            if not ok:
                self.errors.append(f"HTTP {r.status_code}: {r.text.strip()[:120]}")
        except httpx.HTTPError as exc:
            ok = False
            self.errors.append(repr(exc)[:120])
        with self.lock:
            self.samples.append((start, time.monotonic() - start, ok))

    def window(self, a: float, b: float) -> list[tuple[float, float, bool]]:
        with self.lock:
            return [s for s in self.samples if a <= s[0] < b]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.pool.shutdown(wait=True)


class KeepAlive(threading.Thread):
    """One client connection kept open, a request on it every 100 ms: broken if it ever fails."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.stop = threading.Event()
        self.requests = 0
        self.broken: str | None = None

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.conn.request("GET", "/")
                r = self.conn.getresponse()
                r.read()
                if r.status != 200:
                    raise http.client.HTTPException(f"HTTP {r.status}")
                self.requests += 1
            except (OSError, http.client.HTTPException) as exc:
                self.broken = repr(exc)
                return


def cli(url: str, token: str, *args: str) -> object:
    env = {**os.environ, "ONEPANE_URL": url, "ONEPANE_TOKEN": token}
    out = subprocess.run([str(BIN / "onepane"), "-o", "json", *args], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return json.loads(out) if out.strip() else None


def wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if cond():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second, open loop")
    ap.add_argument("--keepalive", type=int, default=4, help="long-lived client connections")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onepane-mobility-") as tmp:
        subprocess.run([str(ROOT / "scripts" / "build-test-disk.sh"), tmp], check=True,
                       capture_output=True)
        with vm_onepane(Path(tmp) / "state", LOCS) as (url, token):
            run(url, token, Path(tmp) / "guest.qcow2", args)


@contextlib.contextmanager
def vm_onepane(state: Path, locations: dict[str, int]) -> Iterator[tuple[str, str]]:
    """onepane with two vm locations; afterwards their namespaces, VMs and the catch-all
    route (if this made it) are gone."""
    had_catch_all = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                                capture_output=True, text=True).stdout
    config = "sync_interval = 1\ndns_port = 0\n" + "".join(
        f'[locations.{n}]\nprovider = "vm"\noptions = {{ index = {i} }}\n'
        for n, i in locations.items())
    try:
        with onepane(state, config) as (url, token, _proc):
            yield url, token
    finally:
        for name, index in locations.items():
            with contextlib.suppress(Exception):
                VmProvider(name, state, {"index": index}).teardown()
        if not had_catch_all:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


def run(url: str, token: str, disk: Path, args: argparse.Namespace) -> None:
    a, b = list(LOCS)
    img = cli(url, token, "images", "import", str(disk), "--name", "bench-guest")["id"]  # type: ignore[index]
    cli(url, token, "images", "replicate", img, "--to", a)
    spec = disk.with_name("mob.yaml")
    spec.write_text(f"name: mob\nimage: {img}\nsize: vm.small\nreplicas: {{{a}: 1}}\n"
                    "health: {path: /, interval: 0.5, timeout: 1.0}\nattempt_timeout: 30\n")
    cli(url, token, "deployments", "apply", "-f", str(spec))
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def dep() -> dict[str, object]:
        return api.get("/v1/deployments/mob").json()  # type: ignore[no-any-return]
    wait(lambda: (dep()["status"].get("locations") or {}).get(a, {}).get("up"), 240,  # type: ignore[attr-defined]
         "the VM serving")
    listen = str(dep()["listen"])
    host, port = listen.rsplit(":", 1)
    load = OpenLoop(f"http://{listen}/", args.rate).start()
    keep = [KeepAlive(host, int(port)) for _ in range(args.keepalive)]
    for k in keep:
        k.start()
    time.sleep(2)  # warm-up before the reference window
    moves = []
    t_ref = time.monotonic()
    here = a
    for i in range(args.moves):
        there = b if here == a else a
        t0 = time.monotonic()
        r = api.post("/v1/deployments/mob/move", json={"to": there, "live": True, "bound_s": 120})
        r.raise_for_status()
        job_id = r.json()["jobs"][0]["id"]
        wait(lambda j=job_id: api.get(f"/v1/jobs/{j}").json()["status"] in ("succeeded", "failed"),
             300, "the move")
        job = api.get(f"/v1/jobs/{job_id}").json()
        t1 = time.monotonic()
        if job["status"] != "succeeded":
            raise SystemExit(f"move {i + 1} failed: {job['error']}")
        sw = next(p for p in job["result"]["phases"] if p["phase"] == "switchover")
        time.sleep(2)  # requests sent just before the end still count for this move
        window = load.window(t0, t1 + 1)
        moves.append({"downtime_ms": sw["downtime_ms"], "total_s": sw["total_ms"] / 1000,
                      "failed": sum(1 for s in window if not s[2]),
                      "worst_s": max((s[1] for s in window), default=0.0),
                      "requests": len(window)})
        print(f"move {i + 1}: {here} -> {there}: downtime {sw['downtime_ms']} ms (QEMU), "
              f"total {sw['total_ms'] / 1000:.2f} s, {moves[-1]['requests']} requests, "
              f"{moves[-1]['failed']} failed, slowest {moves[-1]['worst_s'] * 1000:.0f} ms",
              flush=True)
        here = there
    span = time.monotonic() - t_ref
    quiet_start = time.monotonic()
    time.sleep(min(span, 30))  # the reference: the same load, no move
    ref = load.window(quiet_start, time.monotonic())
    load.close()
    for k in keep:
        k.stop.set()
        k.join(5)
    broken = [k.broken for k in keep if k.broken]
    if load.errors:
        print("failures:", dict(Counter(load.errors).most_common(5)))
    lat = [s[1] for s in ref]
    print(f"reference (no move, {len(ref)} requests): {sum(1 for s in ref if not s[2])} failed, "
          f"p99 {percentile(lat, 99) * 1000:.0f} ms" if lat else "reference: no requests")
    print(f"long-lived connections: {len(keep)} open across {args.moves} moves, "
          f"{sum(k.requests for k in keep)} requests on them, {len(broken)} broken {broken[:2]}")
    failed = sum(m["failed"] for m in moves) + len(broken)
    result("live_move_failed_requests", failed, "requests+connections", "==", 0)
    result("live_move_downtime_ms", statistics.median(m["downtime_ms"] for m in moves), "ms",
           "<=", 100)


if __name__ == "__main__":
    main()
