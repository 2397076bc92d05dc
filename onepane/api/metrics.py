"""`/metrics` for Prometheus: the inventory, deployments, SLAs and data planes, read at scrape
time from the same services the API uses (no second bookkeeping to drift)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core import Core
from .deps import core, viewer

router = APIRouter()


class OnepaneCollector(Collector):
    def __init__(self, c: Core) -> None:
        self.core = c

    def collect(self) -> Iterator[Metric]:
        c = self.core
        instances = GaugeMetricFamily("onepane_instances", "Instances by location and state",
                                      labels=["location", "state"])
        for loc, states in c.ops.instances.summary().items():
            for state, n in states.items():
                instances.add_metric([loc, state], n)
        yield instances
        up = GaugeMetricFamily("onepane_location_up", "1 if the last sync reached the location",
                               labels=["location", "provider"])
        for location in c.locations.list():
            up.add_metric([location.name, location.provider],
                          1.0 if location.status == "ok" else 0.0)
        yield up
        healthy = GaugeMetricFamily("onepane_deployment_healthy_replicas",
                                    "Replicas passing health checks", labels=["deployment", "location"])
        primary = GaugeMetricFamily("onepane_deployment_primary", "1 for the primary location",
                                    labels=["deployment", "location"])
        availability = GaugeMetricFamily("onepane_deployment_availability_ratio",
                                         "Measured availability (0-1)", labels=["deployment"])
        budget = GaugeMetricFamily("onepane_deployment_error_budget_remaining_ratio",
                                   "Error budget left (0-1)", labels=["deployment"])
        served = CounterMetricFamily("onepane_dataplane_requests", "Requests served",
                                     labels=["deployment", "location"])
        retried = CounterMetricFamily("onepane_dataplane_retries", "Attempts retried elsewhere",
                                      labels=["deployment"])
        failed = CounterMetricFamily("onepane_dataplane_failures", "Requests no backend served",
                                     labels=["deployment"])
        for dep in c.deployments.list():
            for loc, st in (dep.status.get("locations") or {}).items():
                healthy.add_metric([dep.name, loc], st.get("healthy", 0))
                primary.add_metric([dep.name, loc], 1.0 if loc == dep.primary else 0.0)
            sla = dep.status.get("sla")
            if sla:
                availability.add_metric([dep.name], sla["availability"] / 100)
                budget.add_metric([dep.name], sla["error_budget"]["remaining_pct"] / 100)
            plane = c.reconciler.planes.get(dep.name)
            stats = plane.stats() if plane else {}
            for loc, n in (stats.get("by_location") or {}).items():
                served.add_metric([dep.name, loc], n)
            if stats:
                retried.add_metric([dep.name], stats.get("retried", 0))
                failed.add_metric([dep.name], stats.get("failed", 0))
        yield from (healthy, primary, availability, budget, served, retried, failed)
        yield from self._live(c)

    @staticmethod
    def _live(c: Core) -> Iterator[Metric]:
        rps = GaugeMetricFamily("onepane_deployment_requests_per_second", "Requests/s through the "
                                "data plane", labels=["deployment", "location"])
        errors = GaugeMetricFamily("onepane_deployment_errors_per_second", "Failed requests/s",
                                   labels=["deployment"])
        p95 = GaugeMetricFamily("onepane_deployment_p95_ms", "p95 latency through the data plane",
                                labels=["deployment"])
        cpu = GaugeMetricFamily("onepane_replica_cpu_percent", "CPU of a local replica (100 = a core)",
                                labels=["deployment", "location", "instance"])
        mem = GaugeMetricFamily("onepane_replica_memory_bytes", "Resident memory of a local replica",
                                labels=["deployment", "location", "instance"])
        check = GaugeMetricFamily("onepane_replica_check_latency_ms", "Last health check latency",
                                  labels=["deployment", "location", "instance"])
        for dep, live in list(c.metrics.live.items()):
            for loc, v in live.rps.items():
                rps.add_metric([dep, loc], v)
            errors.add_metric([dep], live.errors_per_s)
            if live.p95_ms is not None:
                p95.add_metric([dep], live.p95_ms)
            for rid, loc in live.location_of.items():
                if rid in live.cpu:
                    cpu.add_metric([dep, loc, rid], live.cpu[rid])
                    mem.add_metric([dep, loc, rid], live.memory[rid])
                if rid in live.check_ms:
                    check.add_metric([dep, loc, rid], live.check_ms[rid])
        decisions = CounterMetricFamily("onepane_policy_decisions", "Policy engine decisions",
                                        labels=["deployment", "kind"])
        for (dep, kind), n in c.reconciler.decisions.items():
            decisions.add_metric([dep, kind], n)
        yield from (rps, errors, p95, cpu, mem, check, decisions)


@router.get("/metrics", dependencies=[viewer], include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(OnepaneCollector(core(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
