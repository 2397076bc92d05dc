"""What the reconciler remembers of one deployment between passes, and what one pass sees.

One `DeploymentState` per deployment, so forgetting a deployment is one `pop` and no map of
the reconciler can keep a deleted deployment's leftovers (a re-created one of the same name
inherited them once). `Backoff` spaces out retries of what failed: the pass itself stays at its
interval, so the data plane keeps being fed and failovers keep their speed, but a create or
destroy a location refuses is tried again after 0.5, 1, 2 … 30 s rather than every pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Instance
from ..policy.sla import SlaTracker
from ..spec import DeploymentSpec
from ..traffic.dataplane import DataPlane
from ..traffic.health import Target
from ..traffic.manager import Decision


@dataclass
class Backoff:
    """A delay sequence after consecutive failures, reset by a success (kopf's throttler
    works the same way)."""

    DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    failures: int = 0
    until: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.until

    def failed(self, now: float) -> float:
        """Count a failure; returns how long to wait before the next try."""
        delay = self.DELAYS[min(self.failures, len(self.DELAYS) - 1)]
        self.failures += 1
        self.until = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0


@dataclass
class DeploymentState:
    started: float  # monotonic time of the first pass that saw it (the traffic manager's grace)
    plane: DataPlane | None = None
    adopting_until: float | None = None  # hold an adopted plane's configuration until then
    empty_since: float | None = None  # since when the configuration has no backend
    ever_up: set[str] = field(default_factory=set)  # locations that were ever healthy
    replica_ever_up: set[str] = field(default_factory=set)  # replicas that passed a check
    sla: SlaTracker | None = None
    instances: list[Instance] = field(default_factory=list)  # the last listing (the sampler's)
    backoff: Backoff = field(default_factory=Backoff)  # for creating and removing replicas
    connect_timeout: float | None = None  # HAProxy's, learned from the checks (planes.py)


@dataclass
class View:
    """One pass's observation of a deployment: its replicas, their checks, who serves."""

    spec: DeploymentSpec
    instances: list[Instance]
    by_location: dict[str, list[Instance]]
    snapshot: list[Target]  # every replica's check
    up: list[Target]  # the checks that pass
    healthy: set[str]  # locations with a replica up
    healthy_at: dict[str, int]  # replicas up per location of the spec
    decision: Decision
    serving: set[str]
