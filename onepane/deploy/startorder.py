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
ELSEWHERE = "every location it runs at"


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
            where = self._where(status, location)
            key = (after.deployment, where)
            if not self._serves(status, where):
                self._serving_since.pop(key, None)
                return f"waiting for {after.deployment} to serve at {where} (start order)"
            since = self._serving_since.setdefault(key, self.clock())
            left = after.delay - (self.clock() - since)
            if left > 0:
                return (f"{after.deployment} serves at {where}; starting in {left:.0f} s "
                        "(its start delay)")
        return None

    @staticmethod
    def _where(status: dict[str, Any], location: str) -> str:
        """Where the earlier deployment must serve: here when it runs here; when it wants
        nothing here — placement put it elsewhere (a spread application's database), or a
        live move took it away — wherever it runs."""
        here = (status.get("locations") or {}).get(location) or {}
        return location if int(here.get("desired") or 0) > 0 else ELSEWHERE

    @staticmethod
    def _serves(status: dict[str, Any], where: str) -> bool:
        """Every replica it wants there passes its checks (at least one wanted: `_where`
        names a location only where it wants one)."""
        by_loc = status.get("locations") or {}
        here = [v for v in by_loc.values() if int(v.get("desired") or 0) > 0] \
            if where == ELSEWHERE else [by_loc[where]]
        return bool(here) and all(int(h.get("healthy") or 0) >= int(h["desired"]) for h in here)
