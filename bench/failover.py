"""Failover under a steady load with the deployment's default settings, for both data planes
and three kinds of failure (killed processes: connections refused; a silent cut: packets
vanish; the link down), side by side: requests failed, the worst request, p99 in the 2 s after
the fault, how long p50 stayed above twice its value before, time to the first request served
by the new primary. Needs root (network namespaces).

    .venv/bin/python bench/failover.py [--clients 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, result
from onepane.core import Core
from onepane.deploy.spec import parse_spec
from onepane.lab import fail, netns_lab, recover
from onepane.traffic.drill import Load, Switch

LOCS = ("bench-east", "bench-west")
FAULTS = ("kill", "silent", "down")


def wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def up(core: Core, name: str, loc: str) -> bool:
    return bool((core.deployments.get(name).status.get("locations") or {}).get(loc, {}).get("up"))


def drill(data_plane: str, failure: str, clients: int, rounds: int) -> list[Switch]:
    with tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp, \
            netns_lab(Path(tmp), {LOCS[0]: 245, LOCS[1]: 246}, sync_interval=0.3) as core:
        port = free_port()
        name = f"fo-{data_plane}"
        core.deployments.apply(parse_spec({
            "name": name, "image": "httpecho", "size": "small",
            "replicas": {LOCS[0]: 1, LOCS[1]: 1}, "listen": f"127.0.0.1:{port}",
            "data_plane": data_plane,
            "traffic": {"mode": "active-passive", "order": list(LOCS)}}))
        wait(lambda: all(up(core, name, loc) for loc in LOCS), 30, "both locations up")
        load = Load(f"http://127.0.0.1:{port}/", clients=clients).start()
        out = []
        try:
            primary = core.deployments.get(name).primary or LOCS[0]
            wait(lambda: load.served_by(primary, 0), 10, "traffic")
            for _ in range(rounds):
                other = LOCS[1] if primary == LOCS[0] else LOCS[0]
                time.sleep(0.5)  # steady state before the cut
                cut = fail(core, primary, failure)
                wait(lambda o=other: core.deployments.get(name).primary == o, 20, "failover")
                wait(lambda o=other, c=cut: load.served_by(o, c), 10, "traffic moved")
                time.sleep(2.0)  # let the switch window fill
                out.append(load.switch(cut, primary))
                recover(core, primary, failure)
                wait(lambda p=primary: up(core, name, p), 30, "recovery")
                primary = other
        finally:
            load.stop()
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for plane in ("builtin", "haproxy"):
        for failure in FAULTS:
            rows[(plane, failure)] = drill(plane, failure, args.clients, args.rounds)
    print(f"{args.clients} clients, {args.rounds} failovers each, the spec's defaults; times from "
          "the fault, worst round shown")
    print(f"  {'data plane':10} {'fault':6} {'failed':>6} {'worst':>9} {'p99 (2 s)':>10} "
          f"{'p50 > 2x':>9} {'first new':>10} {'requests':>9}")
    total_failed = 0
    worst: dict[tuple[str, str], float] = {}
    for (plane, failure), switches in rows.items():
        failed = sum(s.failed for s in switches)
        total_failed += failed
        worst[(plane, failure)] = max(s.worst_ms for s in switches)
        print(f"  {plane:10} {failure:6} {failed:6d} {worst[(plane, failure)]:7.0f}ms "
              f"{max(s.p99_ms for s in switches):8.1f}ms "
              f"{max(s.p50_elevated_s for s in switches):8.2f}s "
              f"{max((s.first_new_s or 0) for s in switches) * 1000:8.0f}ms "
              f"{sum(s.requests for s in switches):9d}")
    print("  targets: 0 failed; worst <= 1000 ms (built-in) / 2000 ms (HAProxy) after a silent "
          "cut, <= 200 ms after a kill")
    result("failover_silent_worst_ms_builtin", worst[("builtin", "silent")], "ms", "<=", 1000)
    result("failover_silent_worst_ms_haproxy", worst[("haproxy", "silent")], "ms", "<=", 2000)
    result("failover_kill_worst_ms", max(worst[(p, "kill")] for p in ("builtin", "haproxy")),
           "ms", "<=", 200)
    result("failover_failed_requests", total_failed, "count", "<=", 0)


if __name__ == "__main__":
    main()
