"""The deployment reconciler: desired replicas vs what runs, health vs who serves.

Each pass, per deployment: observe (its replicas, their checks, who the traffic manager says
serves), decide (the policy engine: how many replicas each location should run, which to
restart or replace), act (create missing replicas, remove extras, point the health monitor at
the running ones, feed the data plane a configuration when it changed) and report (DNS, SLA,
status). Every action goes through the same operations (jobs) as a user's, and every policy
decision lands in the event log with its reason. What it keeps of a deployment between
passes is one DeploymentState (state.py).
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
from ..providers.base import DATA_TAG
from ..spec import DeploymentSpec
from ..store import fencing
from ..traffic.dataplane import DataPlane, DataPlaneConfig
from ..traffic.health import HealthMonitor, Target
from ..traffic.manager import decide
from .checks import check_for, runs_vms
from .frontdoors import SiteFrontDoors
from .healthevents import say_transitions
from .planes import feed, haproxy_connect_timeout, plane_config, replica_samples
from .publishing import wanted_answer
from .service import Deployment, Deployments
from .slareport import track_sla
from .startorder import StartOrder
from .state import DeploymentState, View

log = logging.getLogger(__name__)
TAG = "onepane:deployment"
BROKEN = {InstanceState.error, InstanceState.missing}


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
        self.states: dict[str, DeploymentState] = {}
        self._labels: dict[str, dict[str, str]] = {}
        self.ops = ops
        self.deployments = deployments
        self.workdir = workdir
        self.health = HealthMonitor()
        self.sites = SiteFrontDoors(deployments.locations, self.health, workdir)
        self.publisher = publisher
        self._replacing: set[str] = set()  # replicas being replaced (by instance id)
        self._restarting: dict[str, str] = {}  # instance -> its restart job
        self._status: dict[str, dict[str, Any]] = {}  # this pass's deployments' statuses
        self.start_order = StartOrder(self._status.get)
        self._said_waiting: dict[tuple[str, str], str] = {}
        # Set by the core: a new replica joins its spec's security groups (instance, groups,
        # location); with it, the location's firewall holds it as soon as it has an address.
        self.join_groups: Callable[[str, list[str], str], None] | None = None
        self._loop = Periodic("reconciler", self.run_once, interval)

    @property
    def planes(self) -> dict[str, DataPlane]:
        """Each deployment's central data plane, as started so far."""
        return {name: st.plane for name, st in self.states.items() if st.plane is not None}

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
        self._status.clear()
        self._status.update({d.name: d.status for d in deps})
        self._labels = {loc.name: loc.labels for loc in self.deployments.locations.list()}
        deciding = self.decides()
        with fencing.deciding(self.fence if deciding else None):
            for dep in deps:
                try:
                    self.reconcile(dep, deciding)
                except OnepaneError as exc:
                    log.warning("deployment %s: %s", dep.name, exc.detail)
            for name in set(self.states) - {d.name for d in deps}:
                self.remove(name, deciding)
        transitions = self.health.drain_transitions()
        if deciding:  # the leader's own checks write the health events
            say_transitions(self.events, transitions)

    def reconcile(self, dep: Deployment, deciding: bool = True) -> None:
        st = self.states.get(dep.name)
        if st is None:
            st = self.states[dep.name] = DeploymentState(started=time.monotonic())
        view = self._observe(dep, st)
        plan = self._decide(dep, view, st, deciding)
        desired = self._act(dep, view, st, plan, deciding)
        config = self._feed(dep, view, st)
        if not deciding:
            if self.publisher:
                self.publisher.forget(dep.name)  # the leader publishes
            return
        self._report(dep, view, st, config, desired)

    def _observe(self, dep: Deployment, st: DeploymentState) -> View:
        spec = DeploymentSpec.model_validate(dep.spec)
        instances = self.ops.instances.list_instances(tags={TAG: dep.name}, limit=1000).items
        st.instances = instances
        by_loc: dict[str, list[Instance]] = defaultdict(list)
        for inst in instances:
            by_loc[inst.location].append(inst)
        snapshot = self.health.snapshot(dep.name)
        where = {i.id: i.location for i in instances}
        for t in snapshot:  # a live move keeps the check's state; its place is the record's
            t.location = where.get(t.key, t.location)
        up = [t for t in snapshot if t.up]
        healthy = {t.location for t in up}
        since: dict[str, float] = {}
        for t in up:
            since[t.location] = min(since.get(t.location, t.since), t.since)
        st.ever_up |= healthy
        decision = decide(spec, dep.primary, healthy, since, time.monotonic(), st.ever_up,
                          st.started)
        serving = set(decision.order[:1]) if spec.traffic.mode == "active-passive" else {
            loc for loc, w in decision.weights.items() if w > 0}
        healthy_at = {loc: sum(1 for t in up if t.location == loc) for loc in spec.replicas}
        return View(spec, instances, by_loc, snapshot, up, healthy, healthy_at, decision, serving)

    def _decide(self, dep: Deployment, view: View, st: DeploymentState,
                deciding: bool) -> engine.Plan | None:
        """The policy engine's plan, or None: not deciding (a standby), a live move under way
        (no policy acts on a VM between two places, and no replica is added or removed until
        the move has updated the spec), or a spec changed since this pass read it (a live move
        that landed in between writes the spec and its VM's location together: judged against
        the older spec, the moved VM would count as a surplus at its new location)."""
        if not deciding or {i.id for i in view.instances} & self.ops.jobs.moving() \
                or self.deployments.generation(dep.name) != dep.generation:
            return None
        return self._plan(dep.name, view, st)

    def _act(self, dep: Deployment, view: View, st: DeploymentState,
             plan: engine.Plan | None, deciding: bool) -> dict[str, int]:
        """Carry the plan out (creates and removals, spaced out by the state's backoff after
        a failure) and point the health checks at what runs; returns the replicas wanted."""
        spec, by_loc = view.spec, view.by_location
        if plan is None:  # not deciding, moving, or the policy engine has not planned it yet
            desired = {loc: len(by_loc.get(loc, [])) for loc in spec.replicas}
        else:
            desired = plan.replicas
            if st.backoff.ready(time.monotonic()):
                try:
                    for loc in set(by_loc) | set(plan.replicas):
                        self._converge(dep.name, spec, loc, by_loc.get(loc, []),
                                       plan.replicas.get(loc, 0))
                    st.backoff.succeeded()
                except OnepaneError as exc:
                    delay = st.backoff.failed(time.monotonic())
                    log.warning("deployment %s: %s (tried again in %.1f s)", dep.name,
                                exc.detail, delay)
        self._replacing &= {i.id for i in view.instances}  # forget replicas that are gone
        checked_up = {t.key for t in view.up} if deciding else set()
        for inst in view.instances:  # no longer checked because it stopped: say so, as a crash does
            if inst.id in checked_up and inst.state in (InstanceState.stopped,
                                                        InstanceState.suspended,
                                                        InstanceState.error):
                self.events.emit("health.down", f"{dep.name}: replica {inst.id} at "
                                 f"{inst.location} is down (instance {inst.state})",
                                 severity="warning", location=inst.location, subject=dep.name,
                                 data={"instance": inst.id, "reason": str(inst.state)})
        running = [i for i in view.instances if i.state == InstanceState.running and i.addresses
                   and "app" in i.ports and i.location in spec.replicas]
        self.health.set_targets(dep.name, [
            Target(key=i.id, location=i.location, host=i.addresses[0], port=i.ports["app"],
                   check=check_for(spec, self._runs_vms(i.location)),
                   source=self._check_source(i.location)) for i in running])
        return desired

    def _feed(self, dep: Deployment, view: View, st: DeploymentState) -> DataPlaneConfig:
        """The central front door, then the sites' own doors (same pools, their addresses)."""
        learned = None  # HAProxy's connect timeout, when the spec sets none (planes.py)
        if view.spec.data_plane == "haproxy" and view.spec.connect_timeout is None:
            learned = st.connect_timeout = haproxy_connect_timeout(view.up, st.connect_timeout)
        config = plane_config(dep.listen, self.front_door_host, view.spec, view.decision,
                              view.up, learned)
        feed(st, dep.name, view.spec, config, self.workdir,
             lambda: self.health.snapshot(dep.name))
        if view.spec.front_doors == "per-site":
            self.sites.apply(dep.name, view.spec, config)
        else:
            self.sites.remove(dep.name)
        return config

    def _report(self, dep: Deployment, view: View, st: DeploymentState,
                config: DataPlaneConfig, desired: dict[str, int]) -> None:
        spec, decision = view.spec, view.decision
        dns_status = self._publish(dep.name, spec, view.serving, config, decision.weights)
        sla = track_sla(st, dep.name, dep.status, spec, bool(view.serving & view.healthy),
                        self.events)
        status = {
            "mode": spec.traffic.mode,
            "serving": decision.order[:1] if spec.traffic.mode == "active-passive"
            else [loc for loc, w in decision.weights.items() if w > 0],
            "weights": decision.weights,
            "locations": {loc: {"replicas": sum(1 for i in view.by_location.get(loc, [])
                                                if i.state not in BROKEN),
                                "desired": desired.get(loc, 0),
                                "healthy": view.healthy_at[loc],
                                "up": loc in view.healthy}
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

    def _plan(self, name: str, view: View, st: DeploymentState) -> engine.Plan | None:
        """Ask the policy engine, then carry out and log what it decided."""
        spec, instances = view.spec, view.instances
        checks = {t.key: t.failures for t in view.snapshot}
        ever = st.replica_ever_up
        ever &= {i.id for i in instances}
        ever |= {t.key for t in view.snapshot if t.up}
        live = self.metrics.live.get(name) if self.metrics else None
        obs = engine.Observation(
            serving=view.serving,
            replicas=[engine.Replica(i.id, i.location, i.state, checks.get(i.id, 0),
                                     live.cpu.get(i.id) if live else None, self._still_restarting(i.id),
                                     i.id in ever, self._runs_vms(i.location))
                      for i in instances if i.id not in self._replacing],
            healthy=view.healthy_at,
            rps=dict(live.rps) if live else {},
            p95_ms=live.p95_ms if live else None,
            labels=self._labels)
        state = self.policy.state(name)
        plan = self.policy.evaluate(name, spec, obs, time.monotonic(), self.clock())
        if plan is None:
            return None
        for act in plan.actions:
            if act.kind == "restart" and act.instance:
                try:
                    self._restarting[act.instance] = self.ops.instances.instance_action(
                        act.instance, "reboot").id
                except OnepaneError as exc:  # e.g. already being replaced; the next pass decides
                    log.warning("%s: cannot restart %s: %s", name, act.instance, exc.detail)
                    continue
            elif act.kind == "replace" and act.instance:
                if act.instance in self._replacing:
                    continue
                self._replacing.add(act.instance)
                self.ops.instances.destroy_instance(act.instance, f"reconcile:{act.instance}:destroy")
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

    def _check_source(self, location: str) -> str | None:
        try:
            return self.deployments.locations.provider(location).check_source()
        except OnepaneError:
            return None

    def _runs_vms(self, location: str) -> bool:
        return runs_vms(self.deployments.locations.provider, location)

    def _still_restarting(self, instance: str) -> bool:
        job = self._restarting.get(instance)
        if job is None:
            return False
        try:
            if self.ops.jobs.get_job(job).status in UNFINISHED:
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
            self.ops.instances.destroy_instance(extra.id, f"reconcile:{extra.id}:destroy")
        if want > len(live) and self._waits(name, spec, loc):
            return
        for tags in self._new_replicas(name, spec, have, want, want - len(live)):
            # `want` is the engine's: 0 where placement forbids
            job = self.ops.instances.create_instance(InstanceCreate(
                name=f"{name}-{loc}"[:50] + f"-{int(time.time() * 1000) % 100000}",
                location=loc, image=spec.image_at(loc), size=spec.size_at(loc), tags=tags))
            if spec.security_groups and self.join_groups is not None and job.target:
                self.join_groups(job.target, spec.security_groups, loc)
            self.events.emit("replica.created", f"{name}: starting a replica at {loc}",
                             location=loc, subject=name)

    @staticmethod
    def _new_replicas(name: str, spec: DeploymentSpec, have: list[Instance], want: int,
                      missing: int) -> list[dict[str, str]]:
        """The tags of the replicas to create. Where the storage policy keeps data, each
        replica holds a slot (`onepane:data` = `<name>.<slot>`, slots 0..want-1) and gets the
        data disks its slot's last holder left; a slot is free only once its holder is gone,
        so a broken replica's replacement waits for its destroy (which keeps the disks) rather
        than starting blank in another slot."""
        if spec.storage.data != "keep":
            return [{TAG: name}] * max(0, missing)
        held = {i.tags.get(DATA_TAG) for i in have}
        free = [f"{name}.{n}" for n in range(want) if f"{name}.{n}" not in held]
        return [{TAG: name, DATA_TAG: key} for key in free[:max(0, missing)]]

    def _waits(self, name: str, spec: DeploymentSpec, loc: str) -> bool:
        """Whether the start order holds this deployment's new replicas at `loc` back; said
        once as an event each time the reason changes kind (waiting, then its delay)."""
        why = self.start_order.waiting(spec, loc)
        kind = why.split(" ", 1)[0] if why else ""
        if why and self._said_waiting.get((name, loc)) != kind:
            self.events.emit("replica.waiting", f"{name}: {why}", location=loc, subject=name)
        self._said_waiting[(name, loc)] = kind
        return why is not None

    def sample_metrics(self) -> None:
        """One look at every deployment for the metrics (the sampler thread calls this)."""
        if self.metrics is not None:
            for name, st in list(self.states.items()):
                if st.plane is not None:
                    replicas = replica_samples(st.instances, self.health.snapshot(name),
                                               self.ops.locations.provider)
                    self.metrics.observe(name, st.plane.stats(), replicas)

    def remove(self, name: str, deciding: bool = True) -> None:
        st = self.states.pop(name, None)
        if st is not None and st.plane is not None:
            st.plane.stop()
        self.sites.remove(name)
        self.health.forget(name)
        self.policy.forget(name)
        if self.metrics:
            self.metrics.forget(name)
        if not deciding:
            if self.publisher:
                self.publisher.forget(name)
            return
        if self.publisher:
            self.publisher.withdraw(name)
        for inst in self.ops.instances.list_instances(tags={TAG: name}, limit=1000).items:
            # the deployment is gone: so is the data its replicas kept (after each destroy)
            self.ops.instances.destroy_instance(
                inst.id, f"reconcile:{inst.id}:destroy",
                forget_data=name if DATA_TAG in inst.tags else None)
