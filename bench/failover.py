"""Failover under a steady load, for both data planes and both kinds of failure, side by side:
time from the cut to the last failed request and to the first request served by the new
primary, requests failed, p99 latency during the switch. Needs root (network namespaces).

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
# A request already sent to a location that goes silent waits this long before it is retried
# elsewhere: the knob that bounds the switch after a silent outage (the spec's default is 5 s).
ATTEMPT_TIMEOUT = 0.8


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
            "data_plane": data_plane, "attempt_timeout": ATTEMPT_TIMEOUT,
            "health": {"interval": 0.2, "timeout": 0.2, "rise": 2, "fall": 2},
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
        for failure in ("kill", "silent"):
            rows[(plane, failure)] = drill(plane, failure, args.clients, args.rounds)
    print(f"{args.clients} clients, {args.rounds} failovers each, attempt_timeout "
          f"{ATTEMPT_TIMEOUT}s; times from the cut, worst round shown")
    print(f"  {'data plane':10} {'failure':7} {'failed':>6} {'last fail':>10} "
          f"{'first new':>10} {'p99 (2 s)':>10} {'requests':>9}")
    total_failed = 0
    for (plane, failure), switches in rows.items():
        failed = sum(s.failed for s in switches)
        total_failed += failed
        last = max((s.last_failure_s or 0) for s in switches)
        first = max((s.first_new_s or 0) for s in switches)
        p99 = max(s.p99_ms for s in switches)
        reqs = sum(s.requests for s in switches)
        print(f"  {plane:10} {failure:7} {failed:6d} {last * 1000:8.0f}ms "
              f"{first * 1000:8.0f}ms {p99:8.1f}ms {reqs:9d}")
    print("  targets: 0 failed; first new <= 200 ms after a kill, <= 1000 ms after a silent cut")
    result("failover_failed_requests", total_failed, "count", "<=", 0)


if __name__ == "__main__":
    main()
