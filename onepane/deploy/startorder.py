"""Start order between deployments (a spec's `after`): what keeps a deployment's replicas at a
location from being created yet.

An application's tiers are deployments; its OVF StartupSection says the database starts first,
the app tier once the database is up and its delay has passed, the web tier last. The reconciler
asks `waiting` before it creates a replica; the answer is read from the status the reconciler
itself writes for the earlier deployment (its replicas and how many pass their checks at each
location), so it costs one indexed read per earlier deployment, and only when a replica is
missing. The delay counts from the first pass that saw the earlier deployment serving there; it
is kept in memory, so a restarted onepane waits it once more (never less).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..spec import DeploymentSpec

Status = Callable[[str], dict[str, Any] | None]  # deployment -> its status (None: no such one)


class StartOrder:
    def __init__(self, status_of: Status, clock: Callable[[], float] = time.monotonic) -> None:
        self.status_of = status_of
        self.clock = clock
        self._serving_since: dict[tuple[str, str], float] = {}

    def waiting(self, spec: DeploymentSpec, location: str) -> str | None:
        """Why no replica of `spec` may be created at `location` yet; None when it may."""
        for after in spec.after:
            status = self.status_of(after.deployment)
            if status is None:
                return f"waiting for {after.deployment}, which does not exist"
            here = (status.get("locations") or {}).get(location) or {}
            wanted = int(here.get("desired") or 0)
            key = (after.deployment, location)
            if wanted == 0 or int(here.get("healthy") or 0) < wanted:
                self._serving_since.pop(key, None)
                return f"waiting for {after.deployment} to serve at {location} (start order)"
            since = self._serving_since.setdefault(key, self.clock())
            left = after.delay - (self.clock() - since)
            if left > 0:
                return (f"{after.deployment} serves at {location}; starting in {left:.0f} s "
                        "(its start delay)")
        return None
