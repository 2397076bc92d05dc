"""Availability against a target, from what the health checks saw, and the error budget left.

A deployment is *available* while at least one location that serves it has a healthy replica.
Time is integrated between observations, so the figure does not depend on how often they come.

Measuring starts after a warm-up: when the deployment is first seen available, or `warm_up`
seconds after the tracker started, whichever comes first. A new deployment's replicas take
seconds to boot and a restarted onepane's health checks start from nothing; counting that time
as an outage raised an `sla.violation` for every new deployment and after every restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SlaTracker:
    target: float  # percent, e.g. 99.9
    up_s: float = 0.0
    down_s: float = 0.0
    last: float | None = None
    available: bool | None = None
    violated: bool = False
    warm_up: float = 60.0
    warm_until: float | None = None
    measuring: bool = False

    def observe(self, now: float, available: bool) -> str | None:
        """Account the time since the last observation to the state seen then. Returns
        "violation" or "recovered" when availability crosses the target."""
        if not self.measuring:
            if self.warm_until is None:
                self.warm_until = now + self.warm_up
            if not available and now < self.warm_until:
                return None  # still warming up: not counted
            self.measuring = True
            self.last, self.available = now, available
            return None
        if self.last is not None and self.available is not None:
            dt = max(0.0, now - self.last)
            if self.available:
                self.up_s += dt
            else:
                self.down_s += dt
        self.last, self.available = now, available
        below = self.availability() < self.target
        if below != self.violated:
            self.violated = below
            return "violation" if below else "recovered"
        return None

    def availability(self) -> float:
        total = self.up_s + self.down_s
        return 100.0 if total == 0 else 100.0 * self.up_s / total

    def budget(self) -> dict[str, float]:
        """What is left of the downtime the target allows. Once spent it is 0 % left, and the
        overspend is said in seconds: `-97029.76 % left` (early downtime against a few seconds
        of allowance) told an operator nothing."""
        total = self.up_s + self.down_s
        allowed = total * (100.0 - self.target) / 100.0
        remaining = (100.0 * (1 - self.down_s / allowed) if allowed
                     else (100.0 if self.down_s == 0 else 0.0))
        out = {"allowed_down_s": round(allowed, 3), "used_down_s": round(self.down_s, 3),
               "remaining_pct": round(max(0.0, remaining), 2)}
        if self.down_s > allowed:
            out["overspent_s"] = round(self.down_s - allowed, 3)
        return out

    def report(self) -> dict[str, Any]:
        return {"target": self.target, "availability": round(self.availability(), 4),
                "measuring": not self.measuring,
                "measured_s": round(self.up_s + self.down_s, 1), "violated": self.violated,
                "error_budget": self.budget()}
