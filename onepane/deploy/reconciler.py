"""The deployment reconciler: desired replicas vs what runs, health vs who serves.

Each pass, per deployment: ask the traffic manager who serves, ask the policy engine how many
replicas each location should run and which replicas to restart or replace, carry that out
(create missing replicas, remove extras), point the health monitor at the running replicas and
push a new data plane configuration only when it changed. Every action goes through the same
operations (jobs) as a user's, and every policy decision lands in the event log with its reason.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import OnepaneError
from ..events import EventLog
from ..gslb.publisher import Publisher
from ..inventory.operations import Operations
from ..model import UNFINISHED, Instance, InstanceCreate, InstanceState
from ..periodic import Periodic
from ..policy import engine, passes
from ..policy.metrics import Metrics
from ..policy.sla import SlaTracker
from ..providers.base import Feature
from ..spec import DeploymentSpec, HealthCheck
from ..store import fencing
from ..traffic.dataplane import (
    DataPlane,
    DataPlaneConfig,
    PoolConfig,
    backends_of,
    keep_last,
    make_data_plane,
)
from ..traffic.health import HealthMonitor, Target
from ..traffic.manager import Decision, decide
from .frontdoors import GROUP_SUFFIX, SiteFrontDoors
from .publishing import wanted_answer
from .service import Deployment, Deployments

log = logging.getLogger(__name__)
TAG = "onepane:deployment"
DEFAULT_ATTEMPT_TIMEOUT = {"builtin": 5.0, "haproxy": 1.5}
DEFAULT_CONNECT_TIMEOUT = {"builtin": 0.25, "haproxy": 0.15}
BROKEN = {InstanceState.error, InstanceState.missing}
VM_CHECK_TIMEOUT_S = 2.0


class Reconciler:
    def __init__(self, events: EventLog, ops: Operations, deployments: Deployments,
                 workdir: Path, interval: float = 0.2, metrics: Metrics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 decides: Callable[[], bool] = lambda: True, fence: fencing.Fence | None = None,
                 front_door_host: str | None = None, publisher: Publisher | None = None) -> None:
        self.events = events
        # Every node feeds its own data planes; only the one that `decides` (the leader) fails
        # over, adds and removes replicas, and writes status, each write behind its `fence`.
        self.decides = decides
        self.fence = fence
        self.front_door_host = front_door_host
        self.metrics = metrics
        self.clock = clock  # wall time for schedules; injectable so tests can move it
        self.policy = passes.Engine()
        self.decisions: dict[tuple[str, str], int] = defaultdict(int)  # (deployment, kind) -> count
        self.instances: dict[str, list[Instance]] = {}  # the last listing, for the sampler
        self._labels: dict[str, dict[str, str]] = {}
        self.ops = ops
        self.deployments = deployments
        self.workdir = workdir
        self.health = HealthMonitor()
        self.planes: dict[str, DataPlane] = {}
        self.sites = SiteFrontDoors(deployments.locations, self.health, workdir)
        self.publisher = publisher
        self._replacing: set[str] = set()
        self._adopting: dict[str, float] = {}  # deployment -> hold its adopted plane until
        self._empty_since: dict[str, float] = {}  # deployment -> since when it has no backend
        self._restarting: dict[str, str] = {}  # instance -> its restart job
        self._replica_ever_up: dict[str, set[str]] = {}  # deployment -> replicas that passed a check
        self._ever_up: dict[str, set[str]] = defaultdict(set)
        self._started: dict[str, float] = {}
        self._sla: dict[str, SlaTracker] = {}
        self._loop = Periodic("reconciler", self.run_once, interval)

    def start(self) -> None:
        self.health.start()
        self._loop.start()

    def stop(self) -> None:
        """Stop deciding; the data planes keep serving their last configuration."""
        self._loop.stop()
        self.health.stop()

    def run_once(self) -> None:
        self.policy.begin_pass()
        deps = self.deployments.list()
        self._labels = {loc.name: loc.labels for loc in self.deployments.locations.list()}
        deciding = self.decides()
        with fencing.deciding(self.fence if deciding else None):
            for dep in deps:
                try:
                    self.reconcile(dep, deciding)
                except OnepaneError as exc:
                    log.warning("deployment %s: %s", dep.name, exc.detail)
            for name in set(self.planes) - {d.name for d in deps}:
                self.remove(name, deciding)
        transitions = self.health.drain_transitions()
        if not deciding:
            return  # the leader's own checks write the health events
        for dep_name, t in transitions:
            if dep_name.endswith(GROUP_SUFFIX):
                dep_name = dep_name.removesuffix(GROUP_SUFFIX)
                self.events.emit(f"frontdoor.{'up' if t.up else 'down'}",
                                 f"{dep_name}: the front door at {t.location} ({t.host}:{t.port}) "
                                 f"is {'up' if t.up else 'down'}" + (
                                     f" ({t.last_error})" if t.last_error and not t.up else ""),
                                 severity="info" if t.up else "warning", location=t.location,
                                 subject=dep_name)
                continue
            self.events.emit(f"health.{'up' if t.up else 'down'}",
                             f"{dep_name}: replica {t.key} at {t.location} is "
                             f"{'up' if t.up else 'down'}" + (f" ({t.last_error})" if t.last_error
                                                              and not t.up else ""),
                             severity="info" if t.up else "warning", location=t.location,
                             subject=dep_name, data={"instance": t.key})

    def reconcile(self, dep: Deployment, deciding: bool = True) -> None:
        spec = DeploymentSpec.model_validate(dep.spec)
        instances = self.ops.list_instances(tags={TAG: dep.name}, limit=1000).items
        self.instances[dep.name] = instances
        by_loc: dict[str, list[Instance]] = defaultdict(list)
        for inst in instances:
            by_loc[inst.location].append(inst)
        snapshot = self.health.snapshot(dep.name)
        up = [t for t in snapshot if t.up]
        healthy = {t.location for t in up}
        since: dict[str, float] = {}
        for t in up:
            since[t.location] = min(since.get(t.location, t.since), t.since)
        self._ever_up[dep.name] |= healthy
        now = time.monotonic()
        started = self._started.setdefault(dep.name, now)
        decision = decide(spec, dep.primary, healthy, since, now, self._ever_up[dep.name], started)
        serving = set(decision.order[:1]) if spec.traffic.mode == "active-passive" else {
            loc for loc, w in decision.weights.items() if w > 0}

        healthy_at = {loc: sum(1 for t in up if t.location == loc) for loc in spec.replicas}
        plan = None
        if (deciding and not {i.id for i in instances} & self.ops.moving()
                and self.deployments.generation(dep.name) == dep.generation):
            # (A live move under way: no policy acts on a VM that is between two places, and
            # no replica is added or removed until the move has updated the spec. A spec
            # changed since this pass read it — a live move that landed in between, which
            # writes the spec and its VM's location together — would be judged against
            # instances newer than itself: the moved VM counted as a surplus at its new
            # location and destroyed. The next pass decides, from both as they are.)
            plan = self._plan(dep.name, spec, instances, snapshot, healthy_at, serving, now)
        if plan is None:  # not deciding, moving, or the policy engine has not planned it yet
            desired = {loc: len(by_loc.get(loc, [])) for loc in spec.replicas}
        else:
            desired = plan.replicas
            for loc in set(by_loc) | set(plan.replicas):
                self._converge(dep.name, spec, loc, by_loc.get(loc, []), plan.replicas.get(loc, 0))
        self._replacing &= {i.id for i in instances}  # forget replicas that are gone
        running = [i for i in instances if i.state == InstanceState.running and i.addresses
                   and "app" in i.ports and i.location in spec.replicas]
        checked_up = {t.key: t for t in up} if deciding else {}
        for inst in instances:  # no longer checked because it stopped: say so, as a crash does
            if inst.id in checked_up and inst.state in (InstanceState.stopped, InstanceState.suspended,
                                                        InstanceState.error):
                self.events.emit("health.down", f"{dep.name}: replica {inst.id} at {inst.location} "
                                 f"is down (instance {inst.state})", severity="warning",
                                 location=inst.location, subject=dep.name,
                                 data={"instance": inst.id, "reason": str(inst.state)})
        self.health.set_targets(dep.name, [
            Target(key=i.id, location=i.location, host=i.addresses[0], port=i.ports["app"],
                   check=self._check_for(spec, i.location)) for i in running])
        config = self._apply(dep, spec, decision, up)
        if spec.front_doors == "per-site":
            self.sites.apply(dep.name, spec, config)
        else:
            self.sites.remove(dep.name)
        if not deciding:
            if self.publisher:
                self.publisher.forget(dep.name)  # the leader publishes
            return
        dns_status = self._publish(dep.name, spec, serving, config, decision.weights)
        sla = self._track_sla(dep, spec, bool(serving & healthy))
        status = {
            "mode": spec.traffic.mode,
            "serving": decision.order[:1] if spec.traffic.mode == "active-passive"
            else [loc for loc, w in decision.weights.items() if w > 0],
            "weights": decision.weights,
            "locations": {loc: {"replicas": sum(1 for i in by_loc.get(loc, [])
                                                if i.state not in BROKEN),
                                "desired": desired.get(loc, 0),
                                "healthy": healthy_at[loc],
                                "up": loc in healthy}
                          for loc in spec.replicas},
            "sla": sla,
            "dns": dns_status,
            "front_doors": ({loc: ("up" if loc in self.sites.up(dep.name) else "down")
                             for loc in self.sites.planes.get(dep.name, {})}
                            if spec.front_doors == "per-site" else None),
            "observed_generation": dep.generation,  # the spec this status describes
        }
        self.deployments.set_status(dep.name, decision.primary, status, decision.reason,
                                    read_primary=dep.primary)

    def _publish(self, name: str, spec: DeploymentSpec, serving: set[str],
                 config: DataPlaneConfig, weights: dict[str, int]) -> dict[str, Any] | None:
        if self.publisher is None:
            return None
        if spec.dns is None:
            self.publisher.withdraw(name)
            return None
        wanted = wanted_answer(spec, serving, self.sites.up(name), config.listen.rsplit(":", 1)[0],
                               weights)
        if wanted is not None:
            self.publisher.want(name, wanted)
        return self.publisher.status(name)

    def _plan(self, name: str, spec: DeploymentSpec, instances: list[Instance],
              snapshot: list[Target], healthy_at: dict[str, int], serving: set[str],
              now: float) -> engine.Plan | None:
        """Ask the policy engine, then carry out and log what it decided."""
        checks = {t.key: t.failures for t in snapshot}
        ever = self._replica_ever_up.setdefault(name, set())
        ever &= {i.id for i in instances}
        ever |= {t.key for t in snapshot if t.up}
        live = self.metrics.live.get(name) if self.metrics else None
        obs = engine.Observation(
            serving=serving,
            replicas=[engine.Replica(i.id, i.location, i.state, checks.get(i.id, 0),
                                     live.cpu.get(i.id) if live else None, self._still_restarting(i.id),
                                     i.id in ever, self._runs_vms(i.location))
                      for i in instances if i.id not in self._replacing],
            healthy=healthy_at,
            rps=dict(live.rps) if live else {},
            p95_ms=live.p95_ms if live else None,
            labels=self._labels)
        state = self.policy.state(name)
        plan = self.policy.evaluate(name, spec, obs, now, self.clock())
        if plan is None:
            return None
        for act in plan.actions:
            if act.kind == "restart" and act.instance:
                try:
                    self._restarting[act.instance] = self.ops.instance_action(act.instance, "reboot").id
                except OnepaneError as exc:  # e.g. already being replaced; the next pass decides
                    log.warning("%s: cannot restart %s: %s", name, act.instance, exc.detail)
                    continue
            elif act.kind == "replace" and act.instance:
                if act.instance in self._replacing:
                    continue
                self._replacing.add(act.instance)
                self.ops.destroy_instance(act.instance, f"reconcile:{act.instance}:destroy")
            elif act.kind == "placement" and state.warned_placement.get(act.location or "") == act.reason:
                continue
            if act.kind == "placement":
                state.warned_placement[act.location or ""] = act.reason
            self.decisions[(name, act.kind)] += 1
            self.events.emit(f"policy.{act.kind}", f"{name}: {act.kind.replace('_', ' ')}"
                             f"{' of ' + act.instance if act.instance else ''}"
                             f"{' at ' + act.location if act.location else ''}: {act.reason}",
                             severity="warning" if act.kind in ("restart", "replace", "placement")
                             else "info", location=act.location, subject=name,
                             data={"policy": act.kind, "reason": act.reason,
                                   "instance": act.instance, **act.data})
        return plan

    def _runs_vms(self, location: str) -> bool:
        """Whether the location's replicas are virtual machines (slow to boot, slower to
        answer under load when emulated) rather than processes."""
        try:
            caps = self.deployments.locations.provider(location).capabilities
        except OnepaneError:
            return False
        return not caps.supports(Feature.app_images)

    def _check_for(self, spec: DeploymentSpec, location: str) -> HealthCheck:
        """The spec's check; for VMs, a timeout of at least VM_CHECK_TIMEOUT_S unless the spec
        sets one: a guest that is busy (an emulated one above all) answers in hundreds of
        milliseconds, and 0.3 s rebooted guests that were merely working (issue 28)."""
        h = spec.health
        if "timeout" in h.model_fields_set or not self._runs_vms(location):
            return h
        return h.model_copy(update={"timeout": max(h.timeout, VM_CHECK_TIMEOUT_S)})

    def _track_sla(self, dep: Deployment, spec: DeploymentSpec, available: bool) -> dict[str, Any]:
        tracker = self._sla.get(dep.name)
        if tracker is None:
            old = dep.status.get("sla") or {}  # carry the figures over a restart
            budget = old.get("error_budget") or {}
            measured = float(old.get("measured_s") or 0)
            down = float(budget.get("used_down_s") or 0)
            tracker = self._sla[dep.name] = SlaTracker(
                spec.sla.target, up_s=measured - down, down_s=down,
                violated=bool(old.get("violated")), warm_up=spec.sla.warm_up)
        tracker.target = spec.sla.target
        crossing = tracker.observe(time.monotonic(), available)
        if crossing:
            rep = tracker.report()
            self.events.emit(f"sla.{crossing}", f"{dep.name}: availability {rep['availability']}% "
                             f"is {'below' if crossing == 'violation' else 'back above'} its "
                             f"{spec.sla.target}% target", subject=dep.name,
                             severity="error" if crossing == "violation" else "info", data=rep)
        rep = tracker.report()
        rep["measured_s"] = round(rep["measured_s"])  # write the status at most once a second
        rep["error_budget"]["used_down_s"] = round(rep["error_budget"]["used_down_s"], 1)
        rep["error_budget"]["allowed_down_s"] = round(rep["error_budget"]["allowed_down_s"])
        rep["availability"] = round(rep["availability"], 3)
        return rep

    def _still_restarting(self, instance: str) -> bool:
        job = self._restarting.get(instance)
        if job is None:
            return False
        try:
            if self.ops.get_job(job).status in UNFINISHED:
                return True
        except OnepaneError:
            pass
        del self._restarting[instance]
        return False

    def _converge(self, name: str, spec: DeploymentSpec, loc: str, have: list[Instance],
                  want: int) -> None:
        live = sorted((i for i in have if i.state not in BROKEN and i.id not in self._replacing),
                      key=lambda i: i.id)
        for extra in live[want:]:
            self.ops.destroy_instance(extra.id, f"reconcile:{extra.id}:destroy")
        for _ in range(want - len(live)):  # `want` is the engine's: 0 where placement forbids
            self.ops.create_instance(InstanceCreate(
                name=f"{name}-{loc}"[:50] + f"-{int(time.time() * 1000) % 100000}",
                location=loc, image=spec.image, size=spec.size, tags={TAG: name}))
            self.events.emit("replica.created", f"{name}: starting a replica at {loc}",
                             location=loc, subject=name)

    def _apply(self, dep: Deployment, spec: DeploymentSpec, decision: Decision,
               up: list[Target]) -> DataPlaneConfig:
        """Feed the central front door; returns its configuration (the sites' doors get the
        same, at their own addresses)."""
        pools = tuple(PoolConfig(name=loc, weight=decision.weights.get(loc, 1),
                                 backends=tuple(sorted((t.host, t.port) for t in up
                                                       if t.location == loc)))
                      for loc in decision.order)
        listen = dep.listen
        if self.front_door_host:  # this node's own front door: its address, the spec's port
            listen = f"{self.front_door_host}:{dep.listen.rsplit(':', 1)[1]}"
        config = DataPlaneConfig(listen=listen, mode=spec.protocol,
                                 policy="ordered" if spec.traffic.mode == "active-passive"
                                 else "weighted", pools=pools,
                                 attempt_timeout=spec.attempt_timeout or DEFAULT_ATTEMPT_TIMEOUT[
                                     spec.data_plane], hedge_factor=spec.hedge,
                                 connect_timeout=spec.connect_timeout or DEFAULT_CONNECT_TIMEOUT[
                                     spec.data_plane])
        plane = self.planes.get(dep.name)
        if plane is None:
            plane = self.planes[dep.name] = make_data_plane(spec.data_plane, dep.name,
                                                            self.workdir)
            if plane.pid() is not None:
                # Serving since before this onepane started (a restart, a crash): adopt it and
                # let it keep its last configuration until the health checks have spoken.
                # Pools built from the empty snapshot of a fresh start would refuse every
                # request for as long as the checks take to rise.
                h = spec.health
                self._adopting[dep.name] = time.monotonic() + max(
                    10.0, 5 * (h.interval * (h.rise + h.fall) + h.timeout))
        until = self._adopting.get(dep.name)
        if until is not None:
            # Until every replica's checks have settled (risen, or fallen) and one of them is
            # up, or a cap passes: pools with nobody in them would only turn requests away
            # that the adopted plane, routing around what it saw fail, still serves.
            targets = self.health.snapshot(dep.name)
            settled = any(t.up for t in targets) and all(
                t.up or t.failures >= t.check.fall for t in targets)
            if time.monotonic() < until and not settled:
                return config
            del self._adopting[dep.name]
        empty_for = 0.0
        if backends_of(config):
            self._empty_since.pop(dep.name, None)
        else:
            empty_for = time.monotonic() - self._empty_since.setdefault(dep.name, time.monotonic())
        if plane.applied != config and not keep_last(plane.applied, config, empty_for):
            plane.apply(config)
        return config

    def sample_metrics(self) -> None:
        """One look at every deployment for the metrics (the sampler thread calls this)."""
        if self.metrics is None:
            return
        for name, plane in list(self.planes.items()):
            checks = {t.key: t for t in self.health.snapshot(name)}
            replicas = []
            for inst in self.instances.get(name, []):
                t = checks.get(inst.id)
                use = None
                if inst.provider_id and inst.state == InstanceState.running:
                    try:
                        use = self.ops.locations.provider(inst.location).usage(inst.provider_id)
                    except OnepaneError:
                        use = None
                replicas.append({"id": inst.id, "location": inst.location, "up": bool(t and t.up),
                                 "check_ms": t.latency_ms if t else None,
                                 "cpu": use[0] if use else None, "memory": use[1] if use else None})
            self.metrics.observe(name, plane.stats(), replicas)

    def remove(self, name: str, deciding: bool = True) -> None:
        plane = self.planes.pop(name, None)
        if plane:
            plane.stop()
        self.sites.remove(name)
        self.health.forget(name)
        self._empty_since.pop(name, None)
        self._ever_up.pop(name, None)
        self._sla.pop(name, None)
        self._started.pop(name, None)
        self.policy.forget(name)
        self._replica_ever_up.pop(name, None)
        self.instances.pop(name, None)
        if self.metrics:
            self.metrics.forget(name)
        if not deciding:
            if self.publisher:
                self.publisher.forget(name)
            return
        if self.publisher:
            self.publisher.withdraw(name)
        for inst in self.ops.list_instances(tags={TAG: name}, limit=1000).items:
            self.ops.destroy_instance(inst.id, f"reconcile:{inst.id}:destroy")
