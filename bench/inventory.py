"""Walk a 20,000-instance inventory page by page through the API of a real `onepane up`;
print p50/p99 per page and the server's peak memory.

    .venv/bin/python bench/inventory.py [--instances 20000] [--page 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import onepane, percentile, result
from onepane.config import Settings
from onepane.model import new_id
from onepane.store.db import Store
from onepane.store.tables import InstanceRow, LocationRow

LOCATIONS = ("dc-a", "dc-b", "aws")


def seed(state_dir: Path, n: int) -> None:
    """Fill the store directly: the bench measures listing, not 20,000 creates. The rows are
    `missing` (no processes stand behind them), so the first sync has nothing to change."""
    store = Store(Settings(state_dir=state_dir).db_url)
    store.migrate()
    with store.tx() as s:
        for loc in LOCATIONS:
            s.add(LocationRow(name=loc, provider="local", region=loc))
    rows = [InstanceRow(id=new_id("inst"), name=f"vm-{i}", location=LOCATIONS[i % 3],
                        provider_id=f"p-{i}", image="httpecho", size="small", state="missing",
                        addresses=["10.0.0.1"], ports={"app": 8000},
                        tags={"team": f"t{i % 7}", "env": "prod"}) for i in range(n)]
    with store.tx() as s:
        s.add_all(rows)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=20000)
    ap.add_argument("--page", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        state = Path(tmp)
        t0 = time.perf_counter()
        seed(state, args.instances)
        print(f"seeded {args.instances} instances in {time.perf_counter() - t0:.1f} s")
        config = "sync_interval = 3600\n" + "".join(
            f'[locations.{loc}]\nprovider = "local"\n' for loc in LOCATIONS)
        with onepane(state, config) as (url, token, proc):
            server = psutil.Process(proc.pid)
            http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
            # Measure the steady state: let the start-up sync of every location finish first.
            deadline = time.monotonic() + 120
            while not all(loc["last_sync"] for loc in http.get("/v1/locations").json()):
                if time.monotonic() > deadline:
                    raise SystemExit("the first sync did not finish")
                time.sleep(0.1)
            latencies: list[float] = []
            peak = server.memory_info().rss
            for _round in range(2):  # the first round warms caches; both are counted
                cursor, seen = None, 0
                while True:
                    t = time.perf_counter()
                    r = http.get("/v1/instances", params={"limit": args.page,
                                                          **({"cursor": cursor} if cursor else {})})
                    latencies.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    page = r.json()
                    seen += len(page["items"])
                    peak = max(peak, server.memory_info().rss)
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                assert seen == args.instances, f"walked {seen}, expected {args.instances}"
            filtered = []
            for _ in range(50):
                t = time.perf_counter()
                http.get("/v1/instances", params={"limit": args.page, "location": "aws",
                                                  "tag": "team=t3"}).raise_for_status()
                filtered.append((time.perf_counter() - t) * 1000)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"{len(latencies)} pages of {args.page} over {args.instances} instances")
    print(f"  per page: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(latencies):.2f} ms")
    print(f"  filtered (location + tag): p50 {percentile(filtered, 50):.2f} ms, "
          f"p99 {percentile(filtered, 99):.2f} ms")
    print(f"  server peak RSS: {peak / 2**20:.0f} MiB")
    result("inventory_page_p99", p99, "ms", "<=", 25)


if __name__ == "__main__":
    main()
