"""onepane over a large simulated estate, on SQLite and on PostgreSQL.

1. A million instances in 20 simulated locations (`sim`): the store is filled directly (the
   bench measures reading, not a million creates), in the exact shape the simulated locations
   report, so the server's first sync finds every instance where the store says it is. Then
   the API's inventory pages, unfiltered and filtered by location + tag, walked with cursors
   through a real `onepane up`: p99 of each; the server's RSS after its first sync; the
   store's size.
2. What a sync pass costs at 100,000 instances (20 locations of 5,000) when 1 % and when 0.1 % of them
   change between passes: the real sync code on the real store, in this process, with the
   simulated clock moved on by one interval before each pass; CPU seconds (process time) and
   instance rows written per pass. The reference is the other rate: cost should follow change.

    .venv/bin/python bench/scale.py [--instances 1000000] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BIN, free_port, percentile, postgres_cluster, result, wait_http
from onepane.config import Settings
from onepane.core import Core
from onepane.model import LocationCreate, new_id
from onepane.providers.sim import SimProvider
from onepane.store.db import Store
from onepane.store.tables import InstanceRow, InstanceTagRow, LocationRow

LOCATIONS = 20


def seed(url: str, per_location: int) -> None:
    """The estate the sim locations report (provider ids s-0…), written in bulk."""
    store = Store(url)
    store.migrate()
    with store.tx() as s:
        s.execute(insert(LocationRow), [{"name": f"sim-{n}", "provider": "sim", "region": "sim",
                                         "options": {"instances": per_location}}
                                        for n in range(LOCATIONS)])
    for i0 in range(0, per_location, 5000):  # locations interleaved, as creates over time are
        rows, tags = [], []
        for i, n in ((i, n) for i in range(i0, min(i0 + 5000, per_location))
                     for n in range(LOCATIONS)):
            iid = new_id("inst")
            t = {"team": f"t{i % 7}", "env": "prod"}
            rows.append({"id": iid, "name": f"sim-{i}", "location": f"sim-{n}",
                         "provider_id": f"s-{i}", "image": "sim-image", "size": "sim.small",
                         "state": "running",
                         "addresses": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"],
                         "ports": {}, "tags": t, "origin": "discovered"})
            tags += [{"instance_id": iid, "key": k, "value": v} for k, v in t.items()]
        with store.tx() as s:
            s.execute(insert(InstanceRow), rows)
            s.execute(insert(InstanceTagRow), tags)
    with store.tx() as s:  # what autovacuum would do a moment later: plan with real statistics
        s.execute(text("ANALYZE"))
    store.close()


def store_size(url: str, state: Path) -> float:
    if url.startswith("sqlite"):
        return sum(p.stat().st_size for p in state.glob("onepane.db*")) / 2**20
    store = Store(url)
    with store.tx() as s:
        size = s.scalar(text("SELECT pg_database_size(current_database())"))
    store.close()
    return float(size or 0) / 2**20


def walk(http: httpx.Client, params: dict[str, str], pages: int) -> list[float]:
    times, cursor = [], None
    for _ in range(pages):
        q = {**params, "limit": "100", **({"cursor": cursor} if cursor else {})}
        t0 = time.perf_counter()
        r = http.get("/v1/instances", params=q)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        cursor = r.json()["next_cursor"]
        if not cursor:
            cursor = None
    return times


def estate(url: str, state: Path, total: int) -> tuple[float, float, float, float]:
    per = total // LOCATIONS
    t0 = time.perf_counter()
    seed(url, per)
    print(f"  seeded {total:,} instances in {time.perf_counter() - t0:.0f} s", flush=True)
    config = state / "onepane.toml"
    config.write_text(f'database_url = "{url}"\nsync_interval = 3600\ndns_port = 0\n' + "".join(
        f'[locations.sim-{n}]\nprovider = "sim"\noptions = {{ instances = {per} }}\n'
        for n in range(LOCATIONS)))
    port = free_port()
    with (state / "log").open("wb") as log:
        proc = psutil.Popen([str(BIN / "onepane"), "up", "--config", str(config), "--state-dir",
                             str(state), "--port", str(port)], stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", 300)
        http = httpx.Client(base_url=base, timeout=60, headers={
            "Authorization": f"Bearer {(state / 'admin.token').read_text().strip()}"})
        t0 = time.perf_counter()
        deadline = time.monotonic() + 900
        while not all(loc["last_sync"] for loc in http.get("/v1/locations").json()):
            if time.monotonic() > deadline:
                raise SystemExit("the first sync did not finish")
            time.sleep(0.5)
        print(f"  first sync of every location: {time.perf_counter() - t0:.0f} s", flush=True)
        walk(http, {}, 20)  # warm
        plain = walk(http, {}, 300)
        filtered = walk(http, {"location": "sim-7", "tag": "team=t3"}, 300)
        rss = proc.memory_info().rss / 2**20
    finally:
        proc.terminate()
        proc.wait(30)
    return percentile(plain, 99), percentile(filtered, 99), rss, store_size(url, state)


def sync_cost(url: str, state: Path, total: int, fraction: float, passes: int,
              interval: float = 10.0) -> tuple[float, float]:
    """CPU seconds and instance rows written per sync pass, `fraction` changing per interval."""
    per = total // LOCATIONS
    rate = per * fraction / interval * 60  # changes per minute per location
    core = Core(Settings(state_dir=state, database_url=url, locations=[
        LocationCreate(name=f"sim-{n}", provider="sim", options={
            "instances": per, "changes_per_minute": rate}) for n in range(LOCATIONS)]))
    core.start(background=False)
    try:
        now = [1000.0]
        for n in range(LOCATIONS):
            sim = core.registry.get(f"sim-{n}")
            assert isinstance(sim, SimProvider)
            sim.clock, sim._last = (lambda: now[0]), now[0]
        core.sync.sync_all()  # the first, full pass (instances appear: not measured)
        cpu, written = [], []
        for _ in range(passes):
            now[0] += interval
            with core.store.tx() as s:
                before = s.scalar(text("SELECT count(*) FROM events"))
            t0 = time.process_time()
            core.sync.sync_all()
            cpu.append(time.process_time() - t0)
            with core.store.tx() as s:
                written.append(float(s.scalar(text("SELECT count(*) FROM events")) - before))
        return sum(cpu) / passes, sum(written) / passes
    finally:
        core.stop()


def databases(pg: str | None, state: Path, names: tuple[str, ...]) -> dict[str, str]:
    """One empty store per part of the bench: a PostgreSQL database each, or a SQLite file."""
    for name in names:
        (state / name).mkdir()
    if pg is None:
        return {n: f"sqlite:///{state / n / 'onepane.db'}" for n in names}
    admin = Store(pg)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for name in names:
            c.execute(text(f"CREATE DATABASE {name}"))
    admin.close()
    return {n: pg.rsplit("/", 1)[0] + f"/{n}" for n in names}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1_000_000)
    ap.add_argument("--sync-instances", type=int, default=100_000)
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    worst_page = worst_rss = 0.0
    ratios = []
    for db in args.db.split(","):
        print(f"{db}:", flush=True)
        with contextlib.ExitStack() as stack:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="onepane-scale-")))
            pg = stack.enter_context(postgres_cluster("scale")) if db == "postgres" else None
            urls = databases(pg, state, ("estate", "sync1", "sync01"))
            p99, p99f, rss, size = estate(urls["estate"], state / "estate", args.instances)
            print(f"  {args.instances:,} instances: page p99 {p99:.1f} ms, filtered by "
                  f"location + tag p99 {p99f:.1f} ms; server RSS {rss:.0f} MiB; store "
                  f"{size:.0f} MiB", flush=True)
            worst_page, worst_rss = max(worst_page, p99, p99f), max(worst_rss, rss)
            costs = {}
            for label, frac, name in (("1%", 0.01, "sync1"), ("0.1%", 0.001, "sync01")):
                costs[label] = sync_cost(urls[name], state / name, args.sync_instances, frac,
                                         args.passes)
                print(f"  sync at {args.sync_instances:,} instances, {label} changing: "
                      f"{costs[label][0]:.3f} CPU s and {costs[label][1]:.0f} writes a pass",
                      flush=True)
            ratios.append(costs["1%"][0] / max(costs["0.1%"][0], 1e-6))
            result(f"scale_sync_cpu_s_per_pass_{db}_1pct", costs["1%"][0], "s", "<=", 1.0)
            result(f"scale_sync_cpu_s_per_pass_{db}_0.1pct", costs["0.1%"][0], "s", "<=", 1.0)
            result(f"scale_store_mib_{db}", size, "MiB", "<=", 4096)
    result("scale_server_rss_mib_1m", worst_rss, "MiB", "<=", 600)
    result("scale_sync_cost_follows_change_ratio", min(ratios), "ratio", ">=", 5)
    result("scale_page_p99_ms_1m", worst_page, "ms", "<=", 25)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
