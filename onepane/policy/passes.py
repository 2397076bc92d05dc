"""Passes of the policy engine over many deployments: a pass costs what changed, not the size
of the estate (bench/policy.py: 50,000 deployments).

`Engine` keeps each deployment's policy state and its last plan, answers from that plan while
the deployment's inputs are unchanged and none of its timers is due, and spends at most a
budget evaluating in one pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime

from ..spec import DeploymentSpec
from .engine import Observation, Plan, PolicyState, evaluate


@dataclass(slots=True)
class _Memo(PolicyState):
    """A deployment's policy state and what its last plan was made from: one object each."""

    spec: DeploymentSpec | None = None
    obs: Observation | None = None
    now: float = -math.inf
    wall: datetime | None = None
    plan: Plan | None = None  # the last plan, without its actions
    waited: int = 0  # passes this deployment was due but left for a later pass


@dataclass(slots=True)
class PassStats:
    evaluated: int = 0
    deferred: int = 0
    spent_s: float = 0.0  # time spent evaluating


class Engine:
    """Every deployment's policy state, and its last plan for as long as that plan holds.

    A deployment is evaluated again when its spec or observation changed (compared by value:
    give a new Observation rather than changing one already given) or a timer of its last plan
    is due; otherwise its last replica counts are the answer and there is nothing to do. An
    action is said once for the inputs that caused it: the caller carries it out, and what
    that changes is the next observation.

    A pass spends at most `budget` seconds evaluating (and evaluates at least one deployment,
    so that every pass makes progress): when more is due (onepane starting with
    50,000 deployments, a load change reaching thousands at once), the rest keep their last
    plan, or get None if they have none yet, and are evaluated in the next passes, in the
    caller's order. One pass then never holds up the loop that asked, and the cost of a storm
    is spread rather than paid at once. No deployment waits more than `max_wait` passes: past
    that it is evaluated whatever the budget, because a stale decision is worse than a slow pass.
    """

    def __init__(self, budget: float = 0.1, max_wait: int = 50) -> None:
        self.budget = budget
        self.max_wait = max_wait
        self.last_pass = PassStats()
        self._memo: dict[str, _Memo] = {}

    def begin_pass(self) -> PassStats:
        """Start a new pass's budget; returns the pass that ended."""
        ended, self.last_pass = self.last_pass, PassStats()
        return ended

    def state(self, name: str) -> PolicyState:
        return self._entry(name)

    def evaluate(self, name: str, spec: DeploymentSpec, obs: Observation, now: float,
                 wall: datetime) -> Plan | None:
        """This deployment's plan now; None when it has none yet and this pass is over budget."""
        m = self._memo.get(name)
        if m is None:
            m = self._memo[name] = _Memo()
        last = m.plan
        if (last is not None and m.now <= now < last.due and m.wall is not None
                and m.wall <= wall and (last.due_wall is None or wall < last.due_wall)
                and (spec is m.spec or spec == m.spec) and (obs is m.obs or obs == m.obs)):
            return last
        stats = self.last_pass
        if stats.evaluated and stats.spent_s >= self.budget and m.waited < self.max_wait:
            m.waited += 1
            stats.deferred += 1
            return last
        t0 = time.perf_counter()
        plan = evaluate(spec, obs, m, now, wall)
        stats.spent_s += time.perf_counter() - t0
        stats.evaluated += 1
        m.spec, m.obs, m.now, m.wall, m.waited = spec, obs, now, wall, 0
        m.plan = plan._replace(actions=())
        return plan

    def forget(self, name: str) -> None:
        self._memo.pop(name, None)

    def _entry(self, name: str) -> _Memo:
        m = self._memo.get(name)
        if m is None:
            m = self._memo[name] = _Memo()
        return m
