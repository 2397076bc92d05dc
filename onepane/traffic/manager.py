"""Who serves: the traffic manager's decision, as a pure function of spec, health and history.

active-passive: only the primary serves. When it fails, the next healthy location in the order
becomes primary and *stays* primary after the old one recovers, so repeated failures walk the
order round and round ("whack-a-mole"). Failback happens on command, or with `failback: auto`
once the first location has been healthy for `hold_down` seconds.
active-active: every healthy location serves in proportion to its weight; a failed location's
share goes to the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec import DeploymentSpec


@dataclass(frozen=True)
class Decision:
    primary: str | None
    order: list[str]  # pools in the order the data plane should use them
    weights: dict[str, int] = field(default_factory=dict)
    reason: str | None = None  # set when the primary changed


def next_healthy(order: list[str], after: str | None, healthy: set[str]) -> str | None:
    """The first healthy location after `after` in `order`, wrapping around."""
    if not order:
        return None
    start = order.index(after) + 1 if after in order else 0
    for step in range(len(order)):
        loc = order[(start + step) % len(order)]
        if loc in healthy and loc != after:
            return loc
    return None


STARTUP_GRACE_S = 15.0


def decide(spec: DeploymentSpec, primary: str | None, healthy: set[str],
           healthy_since: dict[str, float], now: float, ever_up: set[str] | None = None,
           started: float = 0.0) -> Decision:
    """`ever_up`: locations seen healthy since the deployment started (at `started`). A primary
    that has never come up yet is given STARTUP_GRACE_S before traffic leaves it, so a deployment
    starts where its order says rather than wherever a replica happened to be ready first."""
    t = spec.traffic
    if t.mode == "active-active":
        weights = {loc: (w if loc in healthy else 0) for loc, w in t.weights.items()}
        live = [loc for loc, w in weights.items() if w > 0]
        best = max(live, key=lambda loc: weights[loc]) if live else primary
        return Decision(primary=best, order=list(t.weights), weights=weights,
                        reason=None if best == primary else "weights")
    order = t.order
    reason = None
    ever_up = healthy if ever_up is None else ever_up
    if primary not in order:
        primary, reason = order[0], "initial"
    elif primary not in healthy and (primary in ever_up or now - started > STARTUP_GRACE_S):
        nxt = next_healthy(order, primary, healthy)
        if nxt is not None:
            primary, reason = nxt, "failover"
    elif (t.failback == "auto" and primary != order[0] and order[0] in healthy
          and now - healthy_since.get(order[0], now) >= t.hold_down):
        primary, reason = order[0], "failback"
    i = order.index(primary)
    return Decision(primary=primary, order=order[i:] + order[:i], reason=reason)
