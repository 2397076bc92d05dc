"""Metrics: sampled once a second into memory (what the policy engine reads), written to the
store every few seconds, and compacted there (raw samples become one-minute averages after
`raw_retention`, which are dropped after `retention`), so the table stays bounded.

Per replica: health (1/0), check latency, CPU and memory (local instances, psutil). Per
deployment and location: requests/s, errors/s and p95 latency from the data plane.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select

from ..store.db import Store
from ..store.tables import MetricRow

log = logging.getLogger(__name__)


@dataclass
class Live:
    """The latest figures of one deployment."""

    ts: float = 0.0
    rps: dict[str, float] = field(default_factory=dict)  # location -> requests/s
    errors_per_s: float = 0.0
    p95_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # instance -> percent
    memory: dict[str, int] = field(default_factory=dict)  # instance -> bytes
    check_ms: dict[str, float] = field(default_factory=dict)  # instance -> latency
    up: dict[str, bool] = field(default_factory=dict)
    location_of: dict[str, str] = field(default_factory=dict)


@dataclass
class Counters:
    ts: float
    by_location: dict[str, int]
    failed: int


class Metrics:
    def __init__(self, store: Store, *, raw_retention: float = 3600.0,
                 retention: float = 7 * 86400.0, write_every: float = 5.0,
                 compact_every: float = 60.0) -> None:
        self.store = store
        self.raw_retention = raw_retention
        self.retention = retention
        self.write_every = write_every
        self.compact_every = compact_every
        self.live: dict[str, Live] = {}
        self._last: dict[str, Counters] = {}
        self._acc: dict[tuple[str, str, str, str], list[Any]] = {}  # series -> [sum, count]
        self._written = 0.0
        self._compacted = 0.0
        self._lock = threading.Lock()

    # ---- sampling ----------------------------------------------------------------------------

    def observe(self, deployment: str, stats: dict[str, Any], replicas: list[dict[str, Any]],
                now: float | None = None) -> Live:
        """Fold one look at a deployment in: data plane counters (cumulative) and replicas
        ({id, location, up, check_ms, cpu, memory})."""
        now = time.time() if now is None else now
        live = Live(ts=now)
        prev = self._last.get(deployment)
        by_loc = {k: int(v) for k, v in (stats.get("by_location") or {}).items()}
        failed = int(stats.get("failed") or 0)
        # Rates over the data plane's own clock: the built-in proxy writes its counters twice a
        # second, so two looks may see the same write, which is no news rather than zero load.
        at = float(stats.get("ts") or now)
        if stats:
            if prev is not None and at <= prev.ts:
                old = self.live.get(deployment)
                live.rps, live.errors_per_s = (dict(old.rps), old.errors_per_s) if old else ({}, 0.0)
            else:
                if prev is not None:
                    dt = at - prev.ts
                    # A restarted data plane counts from zero again: never a negative rate.
                    live.rps = {loc: max(0, n - prev.by_location.get(loc, 0)) / dt
                                for loc, n in by_loc.items()}
                    live.errors_per_s = max(0, failed - prev.failed) / dt
                self._last[deployment] = Counters(at, by_loc, failed)
            live.p95_ms = stats.get("p95_ms")
            live.p50_ms, live.p99_ms = stats.get("p50_ms"), stats.get("p99_ms")
        for r in replicas:
            rid = r["id"]
            live.location_of[rid] = r["location"]
            live.up[rid] = bool(r["up"])
            if r.get("check_ms") is not None:
                live.check_ms[rid] = float(r["check_ms"])
            if r.get("cpu") is not None:
                live.cpu[rid] = float(r["cpu"])
                live.memory[rid] = int(r["memory"])
        with self._lock:
            self.live[deployment] = live
            self._accumulate(deployment, live)
        return live

    def _accumulate(self, dep: str, live: Live) -> None:
        """Stored samples are means over the write period, so a spike between two writes is
        not lost."""
        def add(name: str, value: float | None, location: str = "", instance: str = "") -> None:
            if value is not None:
                acc = self._acc.setdefault((dep, location, instance, name), [0.0, 0])
                acc[0] += float(value)
                acc[1] += 1
        for loc, rps in live.rps.items():
            add("rps", rps, loc)
        if live.rps:
            add("errors_per_s", live.errors_per_s)
        add("p95_ms", live.p95_ms)
        add("p50_ms", live.p50_ms)
        add("p99_ms", live.p99_ms)
        for rid, loc in live.location_of.items():
            add("up", 1.0 if live.up.get(rid) else 0.0, loc, rid)
            add("check_ms", live.check_ms.get(rid), loc, rid)
            add("cpu_percent", live.cpu.get(rid), loc, rid)
            add("memory_bytes", live.memory.get(rid), loc, rid)

    def forget(self, deployment: str) -> None:
        with self._lock:
            self.live.pop(deployment, None)
        self._last.pop(deployment, None)

    # ---- storing -----------------------------------------------------------------------------

    def flush(self, now: float | None = None) -> int:
        """Write the latest figures of every deployment, at most every `write_every` seconds."""
        now = time.time() if now is None else now
        if now - self._written < self.write_every:
            return 0
        self._written = now
        with self._lock:
            acc, self._acc = self._acc, {}
        rows = [{"ts": now, "deployment": dep, "location": loc, "instance": inst, "name": name,
                 "value": total / n, "step": 0} for (dep, loc, inst, name), (total, n) in acc.items()]
        if rows:
            with self.store.tx() as s:
                s.execute(insert(MetricRow), rows)
        if now - self._compacted > self.compact_every:
            self.compact(now)
        return len(rows)

    def compact(self, now: float | None = None) -> tuple[int, int]:
        """Raw samples older than raw_retention become one-minute averages; averages older than
        retention go. Returns (raw samples folded, averages dropped)."""
        now = time.time() if now is None else now
        self._compacted = now
        # Whole minutes only, so that each minute is folded once, with all its samples.
        cutoff = (now - self.raw_retention) // 60 * 60
        bucket = (func.floor(MetricRow.ts / 60) * 60).label("bucket")
        keys = (MetricRow.deployment, MetricRow.location, MetricRow.instance, MetricRow.name)
        with self.store.tx() as s:
            groups = s.execute(select(*keys, bucket, func.avg(MetricRow.value))
                               .where(MetricRow.step == 0, MetricRow.ts < cutoff)
                               .group_by(*keys, bucket)).all()
            if groups:
                s.execute(insert(MetricRow), [
                    {"deployment": d, "location": loc, "instance": i, "name": n, "ts": float(b),
                     "value": float(v), "step": 60} for d, loc, i, n, b, v in groups])
            folded = s.execute(delete(MetricRow).where(MetricRow.step == 0, MetricRow.ts < cutoff))
            dropped = s.execute(delete(MetricRow).where(MetricRow.step == 60,
                                                        MetricRow.ts < now - self.retention))
            return folded.rowcount or 0, dropped.rowcount or 0  # type: ignore[attr-defined]

    def query(self, deployment: str, name: str | None = None, since: float = 3600.0,
              now: float | None = None) -> list[dict[str, Any]]:
        """Series of one deployment over the last `since` seconds, raw where kept, averaged
        beyond."""
        now = time.time() if now is None else now
        q = (select(MetricRow.name, MetricRow.location, MetricRow.instance, MetricRow.step,
                    MetricRow.ts, MetricRow.value)
             .where(MetricRow.deployment == deployment, MetricRow.ts >= now - since)
             .order_by(MetricRow.ts))
        if name:
            q = q.where(MetricRow.name == name)
        series: dict[tuple[str, str, str], dict[str, Any]] = {}
        with self.store.tx() as s:
            for n, loc, inst, step, ts, value in s.execute(q):
                item = series.setdefault((n, loc, inst), {"name": n, "location": loc or None,
                                                          "instance": inst or None, "points": []})
                item["points"].append([round(ts, 3), value, step])
        return list(series.values())
