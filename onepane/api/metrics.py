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
        for loc, states in c.ops.summary().items():
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


@router.get("/metrics", dependencies=[viewer], include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(OnepaneCollector(core(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
