"""Live mobility: a deployment's running VM moves to another data center without stopping.

`onepane move DEPLOYMENT --to LOC --live` checks everything that can be checked before work
starts (both locations can move VMs, the target is allowed by placement, there is a running
replica to move), then records one job per replica at the primary. Each job migrates its VM
(providers.vm.migration), reports every phase as an event with its duration, and then, in one
transaction, records the instance at its new location and moves one replica of the spec there
with the primary: the reconciler, which holds the deployment while the job runs, finds the
world and the spec agreeing when it looks again.
"""

from __future__ import annotations

from typing import Any

from ..errors import Conflict, InvalidInput, NotFound
from ..events import EventLog
from ..inventory.jobqueue import LIVE_MOVE
from ..inventory.jobs import JobRunner
from ..inventory.locations import Locations
from ..inventory.operations import Operations
from ..model import InstanceState, Job
from ..policy.placement import violation
from ..providers.base import Feature, Provider
from ..spec import DeploymentSpec
from ..store.tables import DeploymentRow, InstanceRow, JobRow
from .reconciler import TAG
from .service import Deployments

DEFAULT_BOUND_S = 300.0


class LiveMoves:
    def __init__(self, events: EventLog, locations: Locations, runner: JobRunner,
                 ops: Operations, deployments: Deployments) -> None:
        self.events = events
        self.locations = locations
        self.ops = ops
        self.deployments = deployments
        # Run again after a crash: the providers' moves find a VM an earlier attempt already
        # moved (and route to it), and the bookkeeping below is done once, so a move onepane
        # died in is finished (or, if libvirt abandoned it, made again) instead of leaving the
        # VM running where onepane does not look for it.
        runner.register(LIVE_MOVE, self._do_move,
                        repeatable=lambda p: p.capabilities.supports(Feature.live_migration))

    def start(self, name: str, to: str, bound_s: float = DEFAULT_BOUND_S) -> list[Job]:
        spec = self.deployments.spec(name)
        dep = self.deployments.get(name)
        source = dep.primary
        if source is None:
            raise Conflict(f"{name} has no primary yet; nothing is running to move", field="name")
        if to == source:
            raise Conflict(f"{name} already runs at {to}", field="to")
        try:
            target = self.locations.provider(to)
        except NotFound as exc:
            raise InvalidInput(f"no location {to!r}", field="to") from exc
        here = self.locations.provider(source)
        here.require(Feature.live_migration, "to")
        target.require(Feature.live_migration, "to")
        if type(here) is not type(target):
            raise InvalidInput(f"{source} and {to} are different kinds of location; a running "
                               "instance moves only between locations of one kind", field="to")
        if (why := violation(spec.policies.placement.require, self.locations.get(to).labels)):
            raise InvalidInput(f"{name} cannot be placed at {to}: it {why}", field="to")
        replicas = [i for i in self.ops.instances.list_instances(location=source, tags={TAG: name}).items
                    if i.state == InstanceState.running]
        if not replicas:
            raise Conflict(f"{name} has no running replica at {source} to move", field="name")
        if self.ops.jobs.moving() & {i.id for i in replicas}:
            raise Conflict(f"{name} is already moving", field="name")
        return [self.ops.jobs.submit(LIVE_MOVE, inst.id, source,
                                {"deployment": name, "from": source, "to": to,
                                 "bound_s": bound_s}, None, None,
                                f"live move of {inst.name} ({inst.id}) from {source} to {to}")
                for inst in replicas]

    def _do_move(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        p = job.params
        name, source, to = p["deployment"], p["from"], p["to"]
        inst_id = job.target or ""
        target = self.locations.provider(to)
        phases: list[dict[str, Any]] = []

        def on_phase(phase: str, seconds: float, details: dict[str, Any]) -> None:
            phases.append({"phase": phase, "seconds": round(seconds, 3), **details})
            extra = (f" (QEMU's downtime {details['downtime_ms']} ms, traffic switched "
                     f"{details['route_switched_ms']} ms after the destination ran)"
                     if details.get("downtime_ms") is not None else "")
            self.events.emit(f"move.{phase}", f"{name}: live move {source} -> {to}: {phase} "
                             f"took {seconds:.2f} s{extra}", location=to, subject=name,
                             data={"instance": inst_id, "seconds": round(seconds, 3), **details})

        with self.events.store.tx() as s:
            row = s.get(InstanceRow, inst_id)
            if row is None or not row.provider_id:
                raise NotFound(f"instance {inst_id} is gone", field="instance")
            provider_id = row.provider_id
        obs = provider.live_migrate(provider_id, target, float(p.get("bound_s") or DEFAULT_BOUND_S),
                                    on_phase)
        with self.events.tx() as s:
            row = s.get(InstanceRow, inst_id)
            if row is not None and row.location == to:
                return {"instance": inst_id, "from": source, "to": to, "phases": phases,
                        "recorded_before": True}  # an earlier attempt recorded it all
            if row is not None:
                row.location, row.provider_id = to, obs.provider_id
                row.state, row.addresses, row.ports = obs.state, obs.addresses, obs.ports
            dep = s.get(DeploymentRow, name)
            if dep is not None:
                spec = DeploymentSpec.model_validate(dep.spec)
                replicas = dict(spec.replicas)
                replicas[source] = max(0, replicas.get(source, 0) - 1)
                replicas[to] = replicas.get(to, 0) + 1
                raw = spec.model_dump()
                raw["replicas"] = replicas
                if to not in raw["traffic"]["order"]:
                    raw["traffic"]["order"].append(to)
                if raw["traffic"]["weights"]:
                    raw["traffic"]["weights"].setdefault(to, raw["traffic"]["weights"].get(source, 1))
                new = DeploymentSpec.model_validate(raw)
                dep.spec, dep.generation = new.model_dump(), dep.generation + 1
                before, dep.primary = dep.primary, to
                self.events.emit("traffic.move", f"{name}: live-moved from {before} to {to}; the "
                                 "same VM serves, with its address and connections",
                                 location=to, subject=name, session=s,
                                 data={"from": before, "to": to, "reason": "live-move",
                                       "instance": inst_id, "phases": phases})
        return {"instance": inst_id, "from": source, "to": to, "phases": phases}
