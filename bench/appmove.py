"""A three-tier application moved live as one, under load through all three tiers. Needs root
(namespaces, libvirt).

The application is the test guest three times (web, app, database with its counter on a data
disk), imported from an OVA in the shape of a vSphere vApp export, deployed with the policy
outside -> web -> app -> db, and moved between two vm data centers (`--moves` times, back and
forth) while:
- an open-loop client sends `--rate` requests/s (pooled keep-alive connections) through the
  front tier's data plane, each one answered by web calling app calling the database;
- `--keepalive` client connections stay open through the front door, a request every 100 ms;
- one long response per move runs *between tiers* (web holds a 20 s stream from the app tier).
The reference, measured in the same run, is the same load over a quiet period with no move.

Per move it prints the total time, each VM's QEMU downtime, the requests that failed and the
connections that broke; then:

    RESULT app_move_failed            requests + connections, target == 0
    RESULT app_move_total_s           the slowest whole-application move
    RESULT app_move_worst_downtime_ms the worst VM's downtime over all moves, target <= 100

    sudo .venv/bin/python bench/appmove.py [--moves 2] [--rate 3] [--keepalive 4]
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, result
from bench.mobility import KeepAlive, OpenLoop, cli, vm_onepane, wait

ROOT = Path(__file__).resolve().parent.parent
LOCS = {"bench-app-a": 231, "bench-app-b": 232}


class Between(threading.Thread):
    """A response the web tier streams from the app tier: a tier-to-tier connection held open
    across the move (busybox wget answers only once the whole stream came)."""

    def __init__(self, web: str, app: str, lines: int) -> None:
        super().__init__(daemon=True)
        self.web, self.app, self.lines = web, app, lines
        self.broken: str | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.web, 80, timeout=120)
        try:
            conn.request("GET", f"/cgi-bin/fetch?60@{self.app}/cgi-bin/stream?{self.lines}")
            body = conn.getresponse().read().decode()
            if body.count("line ") != self.lines or not body.rstrip().endswith("end"):
                self.broken = f"cut short: {body[-60:]!r}"
        except (OSError, http.client.HTTPException) as exc:
            self.broken = repr(exc)
        finally:
            conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=2)
    ap.add_argument("--rate", type=float, default=3.0, help="requests/s through all tiers")
    ap.add_argument("--keepalive", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onepane-appmove-") as tmp:
        ova = Path(subprocess.run([str(ROOT / "scripts" / "build-test-vapp.sh"), tmp], check=True,
                                  capture_output=True, text=True).stdout.strip())
        with vm_onepane(Path(tmp) / "state", LOCS) as (url, token):
            run(url, token, ova, args)


def run(url: str, token: str, ova: Path, args: argparse.Namespace) -> None:
    a, b = list(LOCS)
    app_id = cli(url, token, "images", "import", str(ova), "--name", "shop")["appliance"]["id"]  # type: ignore[index]
    for tier in cli(url, token, "apps", "show", app_id)["tiers"]:  # type: ignore[index]
        cli(url, token, "images", "replicate", tier["image"], "--to", a)
    cli(url, token, "apps", "deploy", app_id, "--name", "shop", "--at", a, "--size", "vm.small",
        "--attempt-timeout", "30",
        "--allow", "outside:shop-web:80", "--allow", "shop-web:shop-app:80",
        "--allow", "shop-app:shop-db:80")
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def status() -> dict[str, Any]:
        return api.get("/v1/applications/shop").json()  # type: ignore[no-any-return]

    def serving() -> bool:
        deps = {d["name"]: d for d in api.get("/v1/deployments").json()}
        return all((deps[t["deployment"]]["status"].get("locations") or {}).get(a, {})
                   .get("healthy") == 1 for t in status()["tiers"])
    t_deploy = time.monotonic()
    wait(serving, 600, "every tier serving")
    print(f"deployed: three tiers serving {time.monotonic() - t_deploy:.1f} s after the deploy "
          "(start order: db, app, web)")
    ip = {t["tier"]: t["instances"][0]["addresses"][0] for t in status()["tiers"]}
    web, mid, db = ip["shop-web"], ip["shop-app"], ip["shop-db"]
    listen = status()["listen"]
    host, port = listen.rsplit(":", 1)
    load = OpenLoop(f"http://{listen}/cgi-bin/fetch?{mid}/cgi-bin/fetch?{db}/cgi-bin/state",
                    args.rate).start()
    keep = [KeepAlive(host, int(port)) for _ in range(args.keepalive)]
    for k in keep:
        k.start()
    time.sleep(2)  # warm-up
    t_ref = time.monotonic()
    time.sleep(10)
    reference = load.window(t_ref, time.monotonic())
    ref_failed = sum(1 for s in reference if not s[2])
    print(f"reference (no move, same load, {len(reference)} requests): {ref_failed} failed, "
          f"p99 {percentile([s[1] * 1000 for s in reference], 99):.0f} ms")
    if ref_failed:  # the load itself is more than these guests serve: the figures would lie
        load.close()
        raise SystemExit(f"the reference failed {ref_failed} requests ({load.errors[:3]}): "
                         "lower --rate")
    moves = []
    here = a
    for i in range(args.moves):
        there = b if here == a else a
        between = Between(web, mid, 200)
        between.start()
        t0 = time.monotonic()
        events_from = api.get("/v1/events", params={"limit": 1, "before": 2**53}).json()["items"][-1]["id"]
        r = api.post("/v1/applications/shop/move", json={"to": there, "bound_s": 300})
        r.raise_for_status()
        job_id = r.json()["job"]["id"]
        wait(lambda j=job_id: api.get(f"/v1/jobs/{j}").json()["status"] in ("succeeded", "failed"),
             400, "the move")
        job = api.get(f"/v1/jobs/{job_id}").json()
        t1 = time.monotonic()
        if job["status"] != "succeeded":
            load.close()
            raise SystemExit(f"move {i + 1} failed: {job['error']}")
        between.join(60)
        time.sleep(2)  # requests sent just before the end still count for this move
        during = api.get("/v1/events", params={"after": events_from, "limit": 200}).json()["items"]
        switch = [e for e in during if e["kind"] == "move.switchover"]
        if i == 0:  # the timeline of one move, as `onepane events` shows it
            for e in during:
                if e["kind"].startswith(("app.", "move.")):
                    print(f"  {e['ts'][11:22]} {e['kind']:<16} {e['message'][:100]}")
        downtimes = [e["data"]["downtime_ms"] for e in switch if e["data"].get("downtime_ms")]
        window = load.window(t0, t1 + 1)
        moves.append({"total_s": job["result"]["seconds"], "downtimes": downtimes,
                      "failed": sum(1 for s in window if not s[2]), "requests": len(window),
                      "between_broken": between.broken,
                      "p99_ms": percentile([s[1] * 1000 for s in window], 99)})
        m = moves[-1]
        print(f"move {i + 1} {here} -> {there}: {m['total_s']:.2f} s, downtime per VM "
              f"{', '.join(str(d) for d in downtimes)} ms, {m['failed']} of {m['requests']} "
              f"requests failed (p99 {m['p99_ms']:.0f} ms), tier-to-tier stream "
              f"{'broken: ' + str(m['between_broken']) if m['between_broken'] else 'intact'}")
        here = there
    load.close()
    for k in keep:
        k.stop.set()
        k.join(5)
    broken = [k.broken for k in keep if k.broken] + [m["between_broken"] for m in moves
                                                     if m["between_broken"]]
    print(f"long-lived: {sum(k.requests for k in keep)} requests on {len(keep)} front-door "
          f"connections, {len(broken)} broken {broken[:3]}")
    after = status()
    assert {t["primary"] for t in after["tiers"]} == {here}, after
    failed = sum(m["failed"] for m in moves) + len(broken)
    result("app_move_failed", failed, "requests+connections", "==", 0)
    result("app_move_total_s", max(m["total_s"] for m in moves), "s", "<=", 60)
    result("app_move_worst_downtime_ms", max(d for m in moves for d in m["downtimes"]), "ms",
           "<=", 100)


if __name__ == "__main__":
    main()
