"""One policy engine: from a deployment's spec and what was observed, the replicas each location
should run now and the actions to take, each with its reason.

It is pure: no I/O, time passed in (a monotonic clock for durations, a wall clock for
schedules), so that it is cheap (bench/policy.py: 1,000 deployments per pass) and testable with
an injected clock. The reconciler carries the actions out and logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..deploy.spec import DeploymentSpec
from . import autoscale, failure, placement, schedule


@dataclass
class Replica:
    id: str
    location: str
    state: str  # onepane instance state
    failures: int = 0  # consecutive failed health checks
    cpu_percent: float | None = None
    restarting: bool = False  # a restart the engine asked for is still being carried out
    ever_healthy: bool = True  # has passed a check since it was made


@dataclass
class Observation:
    serving: set[str]  # locations traffic goes to now
    replicas: list[Replica]
    healthy: dict[str, int]  # location -> healthy replicas
    rps: dict[str, float]  # location -> requests/s through the data plane
    p95_ms: float | None = None
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # location -> labels


@dataclass(frozen=True)
class Action:
    kind: str  # restart | replace | scale_out | scale_in | schedule_on | schedule_off | placement
    reason: str
    location: str | None = None
    instance: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    replicas: dict[str, int]
    actions: list[Action]


@dataclass
class PolicyState:
    scale: autoscale.ScaleState = field(default_factory=autoscale.ScaleState)
    failures: failure.FailureState = field(default_factory=failure.FailureState)
    active: set[str] | None = None  # locations the schedule had active at the last pass
    serving: set[str] | None = None  # locations traffic went to at the last pass
    draining: dict[str, float] = field(default_factory=dict)  # former primary -> keep until
    warned_placement: dict[str, str] = field(default_factory=dict)  # log a violation once


def evaluate(spec: DeploymentSpec, obs: Observation, state: PolicyState, now: float,
             wall: datetime) -> Plan:
    pol = spec.policies
    actions: list[Action] = []
    replicas = dict(spec.replicas)

    for loc in replicas:
        why = placement.violation(pol.placement.require, obs.labels.get(loc, {}))
        if why is not None:
            replicas[loc] = 0
            actions.append(Action("placement", f"{loc} {why}; running nothing there", loc))

    if pol.schedule:
        active = schedule.active_locations(pol.schedule, replicas, wall)
        if state.active is not None:
            for loc in sorted(active - state.active):
                actions.append(Action("schedule_on", f"a schedule window opened at {loc}", loc))
            for loc in sorted(state.active - active):
                actions.append(Action("schedule_off", f"no schedule window is open for {loc}", loc))
        else:  # the first look says what it decided too, not only later changes
            for loc in sorted(replicas):
                actions.append(Action("schedule_on", f"a schedule window is open at {loc}", loc)
                               if loc in active else
                               Action("schedule_off", f"no schedule window is open for {loc}", loc))
        state.active = active
        for loc in replicas:
            if loc not in active:
                replicas[loc] = 0

    if pol.autoscale is not None:
        actions += _capacity_follows_traffic(spec, obs, state, now)
        for loc in sorted(obs.serving):
            if replicas.get(loc, 0) == 0:
                continue  # off by schedule or placement: nothing to scale
            value = _metric(pol.autoscale.metric, obs, loc)
            d = autoscale.evaluate(pol.autoscale, state.scale, loc, spec.replicas[loc], value, now)
            if d is not None:
                actions.append(Action("scale_out" if d.after > d.before else "scale_in", d.reason,
                                      loc, data={"from": d.before, "to": d.after}))
            replicas[loc] = state.scale.locations[loc].replicas
        for loc, until in list(state.draining.items()):
            st = state.scale.locations.get(loc)
            if loc in obs.serving or now >= until or st is None:
                del state.draining[loc]
                if st is not None and loc not in obs.serving:
                    st.replicas = min(max(spec.replicas.get(loc, 0), pol.autoscale.min),
                                      pol.autoscale.max)  # back to its own count
                continue
            if replicas.get(loc, 0):
                replicas[loc] = max(replicas[loc], st.replicas)  # until its cooldown is over

    live = set()
    for r in obs.replicas:
        live.add(r.id)
        if replicas.get(r.location, 0) == 0:
            continue
        if not r.ever_healthy and r.state not in ("error", "missing"):
            # Never passed a check: starting, or its location is cut off. Replacing it would
            # only make another one that fails the same way (the traffic manager handles a
            # location that is down); a crash still counts.
            continue
        fd = failure.evaluate(pol.failure, state.failures, r.id, r.failures, r.state, r.restarting)
        if fd is not None:
            actions.append(Action(fd.action, fd.reason, r.location, r.id))
    failure.forget(state.failures, live)
    return Plan(replicas, actions)


def _capacity_follows_traffic(spec: DeploymentSpec, obs: Observation, state: PolicyState,
                              now: float) -> list[Action]:
    """After a failover the new primary gets the replicas the old one had been scaled to (the
    load arrives with the traffic, and autoscaling from the spec's count would take sustain +
    cooldown per step); the old one keeps its replicas until its scale-in cooldown is over."""
    pol = spec.policies.autoscale
    assert pol is not None
    prev, state.serving = state.serving, set(obs.serving)
    if prev is None or prev == obs.serving:
        return []
    actions = []
    left = prev - obs.serving
    carried = max((state.scale.locations[o].replicas for o in left if o in state.scale.locations),
                  default=0)
    for new in sorted(obs.serving - prev):
        base = spec.replicas.get(new, 0)
        st = state.scale.locations.setdefault(
            new, autoscale.LocationScale(min(max(base, pol.min), pol.max)))
        want = min(carried, pol.max)
        if base and want > st.replicas:
            before, st.replicas, st.last_change = st.replicas, want, now
            actions.append(Action("scale_out", f"capacity follows traffic: {', '.join(sorted(left))} "
                                  f"served with {carried} replicas", new,
                                  data={"from": before, "to": want}))
    for old in left:
        state.draining[old] = now + pol.cooldown_in
    return actions


def _metric(name: str, obs: Observation, loc: str) -> float | None:
    if name == "rps_per_replica":
        if loc not in obs.rps:
            return None
        return obs.rps[loc] / max(1, obs.healthy.get(loc, 0))
    if name == "p95_ms":
        return obs.p95_ms
    cpus = [r.cpu_percent for r in obs.replicas if r.location == loc and r.cpu_percent is not None]
    return sum(cpus) / len(cpus) if cpus else None
