"""The policy engine's decisions, with injected clocks (monotonic for durations, wall for cron)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onepane.errors import InvalidInput
from onepane.policy import engine, passes
from onepane.policy.placement import violation
from onepane.spec import parse_spec

MONDAY_0759 = datetime(2026, 11, 23, 7, 59, tzinfo=UTC)


def spec(**policies: Any) -> Any:
    return parse_spec({"name": "shop", "image": "httpecho", "replicas": {"dc-a": 1, "dc-b": 1},
                       "policies": policies})


def obs(rps: float = 0.0, healthy: int = 1, replicas: list[engine.Replica] | None = None,
        serving: tuple[str, ...] = ("dc-a",), **kw: Any) -> engine.Observation:
    return engine.Observation(serving=set(serving), replicas=replicas or [],
                              healthy={"dc-a": healthy, "dc-b": 1}, rps={"dc-a": rps}, **kw)


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = MONDAY_0759

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def test_schedule_windows_follow_cron_with_an_injected_clock() -> None:
    s = spec(schedule=[{"cron": "0 8 * * 1-5", "duration": 3600, "locations": ["dc-a"]},
                       {"cron": "30 8 * * *", "duration": 60}])
    state, clock = engine.PolicyState(), Clock()
    plan = engine.evaluate(s, obs(), state, clock.mono, clock.wall)
    assert plan.replicas == {"dc-a": 0, "dc-b": 0}  # 07:59 Monday: no window open
    clock.tick(60)
    plan = engine.evaluate(s, obs(), state, clock.mono, clock.wall)
    assert plan.replicas == {"dc-a": 1, "dc-b": 0}  # 08:00: the weekday window opens dc-a
    assert [(a.kind, a.location) for a in plan.actions] == [("schedule_on", "dc-a")]
    clock.tick(30 * 60)
    plan = engine.evaluate(s, obs(), state, clock.mono, clock.wall)
    assert plan.replicas == {"dc-a": 1, "dc-b": 1}  # 08:30: the daily window opens everything
    clock.tick(60)
    plan = engine.evaluate(s, obs(), state, clock.mono, clock.wall)
    assert plan.replicas == {"dc-a": 1, "dc-b": 0}
    assert [(a.kind, a.location) for a in plan.actions] == [("schedule_off", "dc-b")]
    clock.tick(5 * 86400 - 31 * 60)  # Saturday 08:00: the weekday window stays shut
    assert engine.evaluate(s, obs(), state, clock.mono, clock.wall).replicas == {"dc-a": 0, "dc-b": 0}


def test_schedule_respects_the_window_timezone() -> None:
    s = spec(schedule=[{"cron": "0 9 * * *", "duration": 3600, "timezone": "Europe/Berlin"}])
    at_0815_utc = datetime(2026, 11, 23, 8, 15, tzinfo=UTC)  # 09:15 in Berlin (CET)
    assert engine.evaluate(s, obs(), engine.PolicyState(), 0, at_0815_utc).replicas == {"dc-a": 1, "dc-b": 1}


def test_autoscale_out_after_sustain_in_after_cooldown_and_no_flapping() -> None:
    s = spec(autoscale={"min": 1, "max": 3, "scale_out_above": 50, "scale_in_below": 10,
                        "sustain": 2, "cooldown_out": 5, "cooldown_in": 30})
    state, clock = engine.PolicyState(), Clock()

    def step(rps: float, healthy: int = 1) -> engine.Plan:
        clock.tick(1)
        return engine.evaluate(s, obs(rps, healthy), state, clock.mono, clock.wall)
    assert step(200).replicas["dc-a"] == 1  # breach starts
    assert step(200).replicas["dc-a"] == 1  # 1 s sustained
    plan = step(200)
    assert plan.replicas["dc-a"] == 2  # 2 s sustained: out
    assert plan.actions[0].kind == "scale_out" and "rps_per_replica 200.0 > 50" in plan.actions[0].reason
    assert plan.replicas["dc-b"] == 1  # a standby location is not scaled
    for _ in range(4):  # still hot, but within cooldown_out
        assert step(150, 2).replicas["dc-a"] == 2
    assert step(150, 2).replicas["dc-a"] == 3  # sustained, and cooldown_out (5 s) is over
    for _ in range(10):
        assert step(500, 3).replicas["dc-a"] == 3  # capped at max
    # load between the bands: nothing moves, whatever the time
    for _ in range(60):
        assert step(60, 3).actions == []  # 20 rps per replica
    # cold: in, one step per cooldown_in
    downs = [n for n in range(120) if step(3, 3).actions]
    assert len(downs) == 2 and downs[1] - downs[0] >= 30
    assert step(3).replicas["dc-a"] == 1  # at min


def test_capacity_follows_traffic_after_a_failover() -> None:
    s = spec(autoscale={"min": 1, "max": 4, "scale_out_above": 50, "scale_in_below": 10,
                        "sustain": 1, "cooldown_out": 1, "cooldown_in": 30})
    state, clock = engine.PolicyState(), Clock()
    for _ in range(4):  # dc-a serves under load and scales out to 3
        clock.tick(1)
        plan = engine.evaluate(s, obs(300, 1), state, clock.mono, clock.wall)
    assert plan.replicas == {"dc-a": 3, "dc-b": 1}
    clock.tick(1)  # dc-a fails: traffic goes to dc-b
    plan = engine.evaluate(s, obs(0, 0, serving=("dc-b",)), state, clock.mono, clock.wall)
    assert plan.replicas == {"dc-a": 3, "dc-b": 3}  # dc-b at once at dc-a's capacity
    assert [(a.kind, a.location, a.data) for a in plan.actions] == [
        ("scale_out", "dc-b", {"from": 1, "to": 3})]
    assert "capacity follows traffic: dc-a served with 3 replicas" in plan.actions[0].reason
    clock.tick(31)  # the old primary scales back after its cooldown
    plan = engine.evaluate(s, obs(0, 0, serving=("dc-b",)), state, clock.mono, clock.wall)
    assert plan.replicas["dc-a"] == 1


def test_autoscale_on_cpu_and_p95() -> None:
    s = spec(autoscale={"metric": "cpu_percent", "scale_out_above": 80, "scale_in_below": 20,
                        "sustain": 0, "cooldown_out": 0})
    hot = [engine.Replica("inst-1", "dc-a", "running", cpu_percent=95.0)]
    plan = engine.evaluate(s, obs(replicas=hot), engine.PolicyState(), 1.0, MONDAY_0759)
    assert plan.replicas["dc-a"] == 2
    s = spec(autoscale={"metric": "p95_ms", "scale_out_above": 100, "scale_in_below": 10,
                        "sustain": 0, "cooldown_out": 0})
    plan = engine.evaluate(s, obs(p95_ms=250.0), engine.PolicyState(), 1.0, MONDAY_0759)
    assert plan.replicas["dc-a"] == 2 and "p95_ms 250.0 > 100" in plan.actions[0].reason


def test_failure_restart_then_replace() -> None:
    s = spec(failure={"restart_after": 2, "replace_after": 3, "max_restarts": 1})
    state = engine.PolicyState()

    def kinds(failures: int, state_name: str = "running") -> list[str]:
        r = [engine.Replica("inst-1", "dc-a", state_name, failures)]
        return [a.kind for a in engine.evaluate(s, obs(replicas=r), state, 0, MONDAY_0759).actions]
    assert kinds(1) == []
    assert kinds(2) == ["restart"]
    assert kinds(3) == [] and kinds(4) == []  # the restart gets replace_after checks to work
    assert kinds(5) == ["replace"]
    # a fresh replica that recovers after its restart starts counting again
    state = engine.PolicyState()
    assert kinds(2) == ["restart"]
    assert kinds(0) == []
    assert kinds(2) == [] and kinds(3) == ["replace"]  # no restarts left: replace_after applies
    # crashed (the provider says error): restarted, replaced when it crashes again
    state = engine.PolicyState()
    assert kinds(0, "error") == ["restart"]
    assert kinds(0, "running") == []
    assert kinds(0, "error") == ["replace"]
    assert kinds(0, "missing") == ["replace"]  # gone: nothing to restart


def test_no_restarts_means_replace_at_the_threshold() -> None:
    s = spec(failure={"restart_after": 2, "max_restarts": 0})
    r = [engine.Replica("inst-1", "dc-a", "running", 2)]
    acts = engine.evaluate(s, obs(replicas=r), engine.PolicyState(), 0, MONDAY_0759).actions
    assert [(a.kind, a.instance) for a in acts] == [("replace", "inst-1")]


def test_placement_labels() -> None:
    require = {"country": "de", "certifications": ["hipaa", "pci"]}
    assert violation(require, {"country": "de", "certifications": "pci, hipaa,iso27001"}) is None
    assert "certifications=hipaa" in (violation(require, {"country": "de", "certifications": "pci"}) or "")
    assert "country=de (the location has country: fr)" in (violation(require, {"country": "fr"}) or "")
    # a location whose labels changed after the spec was accepted gets no replicas
    s = spec(placement={"require": {"country": "de"}})
    plan = engine.evaluate(s, obs(labels={"dc-a": {"country": "de"}, "dc-b": {"country": "us"}}),
                           engine.PolicyState(), 0, MONDAY_0759)
    assert plan.replicas == {"dc-a": 1, "dc-b": 0} and plan.actions[0].kind == "placement"


@pytest.mark.parametrize("policies, field", [
    ({"autoscale": {"min": 3, "max": 2, "scale_out_above": 5, "scale_in_below": 1}}, "autoscale"),
    ({"autoscale": {"scale_out_above": 5, "scale_in_below": 5}}, "autoscale"),
    ({"schedule": [{"cron": "61 * * * *", "duration": 5}]}, "schedule.0"),
    ({"schedule": [{"cron": "0 * * * *", "duration": 5, "timezone": "Mars/Olympus"}]}, "schedule.0"),
    ({"schedule": [{"cron": "0 * * * *", "duration": 5, "locations": ["dc-z"]}]}, "schedule"),
    ({"failure": {"restart_after": 0}}, "failure.restart_after"),
])
def test_bad_policies_are_rejected_with_the_field(policies: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        spec(**policies)
    assert field in err.value.detail


def test_a_replica_that_never_passed_a_check_is_left_to_failover() -> None:
    """A location cut off from the network fails every check of every replica: replacing them
    there would only churn. A crash is still acted on."""
    s = spec(failure={"restart_after": 1, "max_restarts": 0})
    never = [engine.Replica("inst-1", "dc-a", "running", 50, ever_healthy=False)]
    assert engine.evaluate(s, obs(replicas=never), engine.PolicyState(), 0, MONDAY_0759).actions == []
    crashed = [engine.Replica("inst-1", "dc-a", "error", 0, ever_healthy=False)]
    acts = engine.evaluate(s, obs(replicas=crashed), engine.PolicyState(), 0, MONDAY_0759).actions
    assert [a.kind for a in acts] == ["replace"]


def test_the_first_look_at_a_schedule_says_what_it_decided() -> None:
    s = spec(schedule=[{"cron": "0 8 * * 1-5", "duration": 3600, "locations": ["dc-a"]}])
    plan = engine.evaluate(s, obs(), engine.PolicyState(), 0, MONDAY_0759)
    assert [(a.kind, a.location) for a in plan.actions] == [("schedule_off", "dc-a"),
                                                            ("schedule_off", "dc-b")]


# The Engine: a deployment is evaluated again only when its inputs changed or a timer is due,
# and a pass spends at most its budget.

AUTOSCALE = {"min": 1, "max": 3, "scale_out_above": 50, "scale_in_below": 10, "sustain": 2,
             "cooldown_out": 5, "cooldown_in": 30}


def test_the_engine_answers_unchanged_inputs_from_the_last_plan_until_a_timer_is_due() -> None:
    s, clock, policy = spec(autoscale=AUTOSCALE), Clock(), passes.Engine()
    hot = obs(200)
    first = policy.evaluate("shop", s, hot, clock.mono, clock.wall)
    assert first is not None and first.due == clock.mono + 2  # the breach's sustain
    clock.tick(1)
    policy.begin_pass()
    again = policy.evaluate("shop", s, obs(200), clock.mono, clock.wall)  # equal, not the same
    assert policy.last_pass.evaluated == 0 and again is not None and again.actions == ()
    assert again.replicas == first.replicas
    clock.tick(1)  # the sustain is over: evaluated, and it scales out
    policy.begin_pass()
    out = policy.evaluate("shop", s, hot, clock.mono, clock.wall)
    assert policy.last_pass.evaluated == 1
    assert out is not None and [a.kind for a in out.actions] == ["scale_out"]
    assert out.replicas["dc-a"] == 2
    policy.begin_pass()  # a changed observation is evaluated at once
    policy.evaluate("shop", s, obs(0), clock.mono, clock.wall)
    assert policy.last_pass.evaluated == 1


def test_the_engine_looks_again_at_a_schedule_edge() -> None:
    s = spec(schedule=[{"cron": "0 8 * * 1-5", "duration": 3600}])
    clock, policy = Clock(), passes.Engine()  # Monday 07:59
    plan = policy.evaluate("shop", s, obs(), clock.mono, clock.wall)
    assert plan is not None and plan.replicas == {"dc-a": 0, "dc-b": 0}
    assert plan.due_wall == MONDAY_0759 + timedelta(minutes=1)
    clock.tick(30)
    policy.begin_pass()
    assert policy.evaluate("shop", s, obs(), clock.mono, clock.wall) is not None
    assert policy.last_pass.evaluated == 0
    clock.tick(30)  # 08:00: the window opens
    policy.begin_pass()
    plan = policy.evaluate("shop", s, obs(), clock.mono, clock.wall)
    assert plan is not None and plan.replicas == {"dc-a": 1, "dc-b": 1}
    assert [a.kind for a in plan.actions] == ["schedule_on", "schedule_on"]


def test_a_pass_over_budget_leaves_the_rest_for_the_next_passes_in_order() -> None:
    s, clock = spec(autoscale=AUTOSCALE), Clock()
    policy = passes.Engine(budget=0.0, max_wait=3)  # every pass evaluates one deployment
    names = [f"app{i}" for i in range(3)]

    def one_pass() -> list[engine.Plan | None]:
        policy.begin_pass()
        return [policy.evaluate(n, s, obs(20), clock.mono, clock.wall) for n in names]
    first = one_pass()
    assert first[0] is not None and first[1] is None and first[2] is None  # none planned yet
    assert (policy.last_pass.evaluated, policy.last_pass.deferred) == (1, 2)
    second = one_pass()
    assert all(p is not None for p in second[:2]) and second[2] is None
    assert all(p is not None for p in one_pass())
    assert (policy.last_pass.evaluated, policy.last_pass.deferred) == (1, 0)


def test_no_deployment_waits_more_than_max_wait_passes() -> None:
    s, clock = spec(autoscale=AUTOSCALE), Clock()
    policy = passes.Engine(budget=0.0, max_wait=2)
    waited = 0
    while True:
        policy.begin_pass()
        # the first deployment changes every pass and would take the whole budget
        policy.evaluate("busy", s, obs(20 + waited), clock.mono, clock.wall)
        if policy.evaluate("quiet", s, obs(20), clock.mono, clock.wall) is not None:
            break
        waited += 1
    assert waited == 2


def test_a_restarted_vm_gets_its_boot_before_it_is_replaced() -> None:
    s = spec(failure={"restart_after": 2, "replace_after": 3, "max_restarts": 1,
                      "boot_grace": 60})
    state = engine.PolicyState()

    def kinds(failures: int, now: float, vm: bool = True) -> list[str]:
        r = [engine.Replica("inst-1", "dc-a", "running", failures, slow_boot=vm)]
        return [a.kind for a in engine.evaluate(s, obs(replicas=r), state, now,
                                                 MONDAY_0759).actions]
    assert kinds(2, 0) == ["restart"]
    assert kinds(5, 10) == [] and kinds(9, 59) == []  # booting again: not counted
    assert kinds(10, 61) == []  # the grace is over: failures count from here,
    assert kinds(12, 62) == ["replace"]  # replace_after of them
    # one good check after the restart ends the grace: later failures count at once
    state = engine.PolicyState()
    assert kinds(2, 0) == ["restart"]
    assert kinds(0, 5) == []
    assert kinds(3, 6) == ["replace"]
    # a process has no grace: replace_after checks after its restart
    state = engine.PolicyState()
    assert kinds(2, 0, vm=False) == ["restart"]
    assert kinds(5, 1, vm=False) == ["replace"]
