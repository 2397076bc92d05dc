"""One policy engine: from a deployment's spec and what was observed, the replicas each location
should run now and the actions to take, each with its reason.

It is pure: no I/O, time passed in (a monotonic clock for durations, a wall clock for
schedules), so that it is cheap and testable with an injected clock. The reconciler carries the
actions out and logs them.

Every plan says until when it holds (`due`: the next sustain, cooldown or drain timer;
`due_wall`: the next schedule edge), so that `passes.Engine` can answer a deployment whose
spec and observation are unchanged without evaluating it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from ..spec import DeploymentSpec
from . import autoscale, failure, placement, schedule


@dataclass(slots=True)
class Replica:
    id: str
    location: str
    state: str  # onepane instance state
    failures: int = 0  # consecutive failed health checks
    cpu_percent: float | None = None
    restarting: bool = False  # a restart the engine asked for is still being carried out
    ever_healthy: bool = True  # has passed a check since it was made
    slow_boot: bool = False  # a virtual machine: seconds (minutes, emulated) to boot again


@dataclass(slots=True)
class Observation:
    serving: set[str]  # locations traffic goes to now
    replicas: list[Replica]
    healthy: dict[str, int]  # location -> healthy replicas
    rps: dict[str, float]  # location -> requests/s through the data plane
    p95_ms: float | None = None
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # location -> labels


_NO_DATA: Mapping[str, Any] = MappingProxyType({})


class Action(NamedTuple):
    """A tuple, not a dataclass: a cold pass makes two or three per deployment."""

    kind: str  # restart | replace | scale_out | scale_in | schedule_on | schedule_off | placement
    reason: str
    location: str | None = None
    instance: str | None = None
    data: Mapping[str, Any] = _NO_DATA


class Plan(NamedTuple):
    replicas: dict[str, int]
    actions: Sequence[Action]
    due: float = math.inf  # monotonic time from which the same inputs may decide otherwise
    due_wall: datetime | None = None  # the next schedule edge, if a schedule applies


@dataclass(slots=True)
class PolicyState:
    """What a deployment's policies remember between passes. Values in it are tuples and
    dicts of numbers and names, replaced rather than changed: those the cycle collector stops
    looking at, and at 50,000 deployments a full collection of mutable state took 220 ms."""

    scale: autoscale.Scales = field(default_factory=dict)  # serving location ->
    failures: failure.Records = field(default_factory=dict)  # replica that failed ->
    active: tuple[str, ...] | None = None  # locations the schedule had active at the last pass
    serving: tuple[str, ...] | None = None  # locations traffic went to at the last pass
    draining: dict[str, float] = field(default_factory=dict)  # former primary -> keep until
    warned_placement: dict[str, str] = field(default_factory=dict)  # log a violation once


def evaluate(spec: DeploymentSpec, obs: Observation, state: PolicyState, now: float,
             wall: datetime) -> Plan:
    """The policies in the order they narrow each other: placement forbids a location,
    schedules switch locations off, autoscaling sizes what is left, and the failure policy
    acts on the replicas of locations that still run any."""
    actions: list[Action] = []
    replicas = dict(spec.replicas)
    _place(spec, obs, replicas, actions)
    due_wall = _schedule(spec, state, wall, replicas, actions)
    due = _autoscale(spec, obs, state, now, replicas, actions)
    _failures(spec, obs, state, now, replicas, actions)
    return Plan(replicas, actions, due, due_wall)


def _place(spec: DeploymentSpec, obs: Observation, replicas: dict[str, int],
           actions: list[Action]) -> None:
    require = spec.policies.placement.require
    if require:
        for loc in replicas:
            why = placement.violation(require, obs.labels.get(loc, _NO_LABELS))
            if why is not None:
                replicas[loc] = 0
                actions.append(Action("placement", f"{loc} {why}; running nothing there", loc))


def _schedule(spec: DeploymentSpec, state: PolicyState, wall: datetime,
              replicas: dict[str, int], actions: list[Action]) -> datetime | None:
    """Locations outside every open window run nothing; returns the next window's edge."""
    if not spec.policies.schedule:
        return None
    active, due_wall = schedule.active_until(spec.policies.schedule, replicas, wall)
    names = _names(active)
    if state.active is None:  # the first look says what it decided too, not only changes
        for loc in sorted(replicas):
            actions.append(Action("schedule_on", f"a schedule window is open at {loc}", loc)
                           if loc in active else
                           Action("schedule_off", f"no schedule window is open for {loc}", loc))
    elif names != state.active:
        before = set(state.active)
        for loc in sorted(active - before):
            actions.append(Action("schedule_on", f"a schedule window opened at {loc}", loc))
        for loc in sorted(before - active):
            actions.append(Action("schedule_off", f"no schedule window is open for {loc}", loc))
    state.active = names
    if len(active) != len(replicas):
        for loc in replicas:
            if loc not in active:
                replicas[loc] = 0
    return due_wall


def _autoscale(spec: DeploymentSpec, obs: Observation, state: PolicyState, now: float,
               replicas: dict[str, int], actions: list[Action]) -> float:
    """Size the serving locations that still run replicas; a former primary keeps its
    replicas while it drains. Returns when the next timer (sustain, cooldown, drain) is due."""
    scale, due = spec.policies.autoscale, math.inf
    if scale is None:
        return due
    if state.serving != _names(obs.serving):
        actions += _capacity_follows_traffic(spec, obs, state, now)
    for loc in (obs.serving if len(obs.serving) < 2 else sorted(obs.serving)):
        if replicas.get(loc, 0) == 0:
            continue  # off by schedule or placement: nothing to scale
        value = _metric(scale.metric, obs, loc)
        d = autoscale.evaluate(scale, state.scale, loc, spec.replicas[loc], value, now)
        if d is not None:
            actions.append(Action("scale_out" if d.after > d.before else "scale_in", d.reason,
                                  loc, data={"from": d.before, "to": d.after}))
        st = autoscale.get(state.scale, loc)
        assert st is not None  # autoscale.evaluate made it
        replicas[loc] = st.replicas
        due = min(due, autoscale.due(scale, st))
    for loc, until in list(state.draining.items()):
        st = autoscale.get(state.scale, loc)
        if loc in obs.serving or now >= until or st is None:
            del state.draining[loc]
            if st is not None and loc not in obs.serving:  # back to its own count
                autoscale.put(state.scale, loc, st._replace(
                    replicas=autoscale.initial(scale, spec.replicas.get(loc, 0)).replicas))
            continue
        due = min(due, until)
        if replicas.get(loc, 0):
            replicas[loc] = max(replicas[loc], st.replicas)  # until its cooldown is over
    return due


def _failures(spec: DeploymentSpec, obs: Observation, state: PolicyState, now: float,
              replicas: dict[str, int], actions: list[Action]) -> None:
    records = state.failures
    for r in obs.replicas:
        if replicas.get(r.location, 0) == 0:
            continue
        if not r.ever_healthy and r.state not in (*_GONE, "stopped"):
            # Never passed a check: starting, or its location is cut off. Replacing it would
            # only make another one that fails the same way (the traffic manager handles a
            # location that is down); a crash still counts, and a stopped replica (`onepane
            # down`, then `up`: no check has run since) is started.
            continue
        fd = failure.evaluate(spec.policies.failure, state.failures, r.id, r.failures, r.state,
                              r.restarting, now, r.slow_boot)
        if fd is not None:
            actions.append(Action(fd.action, fd.reason, r.location, r.id))
    if records:
        failure.forget(state.failures, {r.id for r in obs.replicas})


_NO_LABELS: dict[str, str] = {}
_GONE = ("error", "missing")


def _names(locations: set[str]) -> tuple[str, ...]:
    return tuple(sorted(locations)) if len(locations) > 1 else tuple(locations)


def _capacity_follows_traffic(spec: DeploymentSpec, obs: Observation, state: PolicyState,
                              now: float) -> list[Action]:
    """After a failover the new primary gets the replicas the old one had been scaled to (the
    load arrives with the traffic, and autoscaling from the spec's count would take sustain +
    cooldown per step); the old one keeps its replicas until its scale-in cooldown is over."""
    pol = spec.policies.autoscale
    assert pol is not None
    before, state.serving = state.serving, _names(obs.serving)
    if before is None:
        return []
    prev = set(before)
    actions = []
    left = prev - obs.serving
    carried = max((state.scale[o][0] for o in left if o in state.scale), default=0)
    for new in sorted(obs.serving - prev):
        base = spec.replicas.get(new, 0)
        st = autoscale.get(state.scale, new) or autoscale.put(state.scale, new,
                                                             autoscale.initial(pol, base))
        want = min(carried, pol.max)
        if base and want > st.replicas:
            autoscale.put(state.scale, new, st._replace(replicas=want, last_change=now))
            actions.append(Action("scale_out", f"capacity follows traffic: {', '.join(sorted(left))} "
                                  f"served with {carried} replicas", new,
                                  data={"from": st.replicas, "to": want}))
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
