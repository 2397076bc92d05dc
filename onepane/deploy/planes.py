"""A deployment's central data plane: the configuration a pass wants, and when to apply it.

Two guards sit between the health checks and the plane. A plane found serving when onepane
starts (a restart, a crash) is adopted and keeps its last configuration until the checks have
settled: pools built from a fresh start's empty snapshot would refuse every request while the
checks rise. And a configuration with no backend at all is applied only after it has stayed
empty for a while (traffic.dataplane.keep_last): a momentarily empty view must not turn every
request away (issue 35, case 9).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import OnepaneError
from ..model import Instance, InstanceState
from ..providers.base import Provider
from ..spec import DeploymentSpec
from ..traffic.dataplane import (
    DataPlaneConfig,
    PoolConfig,
    backends_of,
    keep_last,
    make_data_plane,
)
from ..traffic.health import Target
from ..traffic.manager import Decision
from .state import DeploymentState

DEFAULT_ATTEMPT_TIMEOUT = {"builtin": 5.0, "haproxy": 1.5}
DEFAULT_CONNECT_TIMEOUT = {"builtin": 0.25, "haproxy": 0.05}
CONNECT_STEPS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


def nearest(t: Target) -> float:
    """A replica's check time as its distance: the fastest of its recent checks (a busy
    machine or interpreter only ever adds to one; the way there does not go away)."""
    return min(t.recent_ms) if t.recent_ms else (t.latency_ms or 0.0)


def haproxy_connect_timeout(up: list[Target], before: float | None) -> float:
    """HAProxy's connect timeout when the spec sets none: the smallest step at least twice
    the slowest replica's check time (`nearest`: a check is a connect and an exchange, two
    round trips and the server's work), raised when that grows, never lowered while onepane
    runs.

    Why it is learned: HAProxy holds every request sent to a location gone silent for its
    connect timeout before it tries elsewhere, and an ordinary client opens a connection per
    held request. At 0.15 s and 300 requests/s that was ~50 held; httpx's pool then spends
    its client's whole CPU on ~57 connections and never catches up (bench/failover.py: a
    round in three held p50 at 0.7 s after the cut). At 0.05 s, ~18 are held and the client
    never noticed. HAProxy cannot adapt per connect as the built-in plane does, so onepane
    sizes it from what its own checks measure: short for locations on this host or its LAN,
    longer for far ones, whose connects a fixed short bound would fail."""
    slowest = max((nearest(t) for t in up), default=0.0) / 1000
    want = next((s for s in CONNECT_STEPS_S if s >= 2 * slowest), CONNECT_STEPS_S[-1])
    return max(want, before or 0.0)


def plane_config(listen: str, front_door_host: str | None, spec: DeploymentSpec,
                 decision: Decision, up: list[Target],
                 connect_timeout: float | None = None) -> DataPlaneConfig:
    """The configuration for the replicas that are up, in the traffic manager's order; at
    this node's own front door address when it has one (the spec's port). `connect_timeout`:
    the learned one (haproxy_connect_timeout) when the spec sets none."""
    pools = tuple(PoolConfig(name=loc, weight=decision.weights.get(loc, 1),
                             backends=tuple(sorted((t.host, t.port) for t in up
                                                   if t.location == loc)))
                  for loc in decision.order)
    if front_door_host:
        listen = f"{front_door_host}:{listen.rsplit(':', 1)[1]}"
    return DataPlaneConfig(
        listen=listen, mode=spec.protocol,
        policy="ordered" if spec.traffic.mode == "active-passive" else "weighted", pools=pools,
        attempt_timeout=spec.attempt_timeout or DEFAULT_ATTEMPT_TIMEOUT[spec.data_plane],
        hedge_factor=spec.hedge,
        connect_timeout=spec.connect_timeout or connect_timeout
        or DEFAULT_CONNECT_TIMEOUT[spec.data_plane])


def feed(st: DeploymentState, name: str, spec: DeploymentSpec, config: DataPlaneConfig,
         workdir: Path, checks: Callable[[], list[Target]]) -> None:
    """Apply `config` to the deployment's plane (started, or adopted, on first use) unless
    one of the guards above holds it."""
    now = time.monotonic()
    if st.plane is None:
        st.plane = make_data_plane(spec.data_plane, name, workdir)
        if st.plane.pid() is not None:
            h = spec.health
            st.adopting_until = now + max(10.0, 5 * (h.interval * (h.rise + h.fall) + h.timeout))
    if st.adopting_until is not None:
        # until every replica's checks have settled (risen, or fallen) and one is up, or the
        # cap passes
        targets = checks()
        settled = any(t.up for t in targets) and all(
            t.up or t.failures >= t.check.fall for t in targets)
        if now < st.adopting_until and not settled:
            return
        st.adopting_until = None
    empty_for = 0.0
    if backends_of(config):
        st.empty_since = None
    else:
        if st.empty_since is None:
            st.empty_since = now
        empty_for = now - st.empty_since
    if st.plane.applied != config and not keep_last(st.plane.applied, config, empty_for):
        st.plane.apply(config)


def replica_samples(instances: list[Instance], checks: list[Target],
                    provider: Callable[[str], Provider]) -> list[dict[str, Any]]:
    """Each replica as the metrics record it beside its plane's counters: up, its check's
    latency, and its CPU and memory where its location can say."""
    by_key = {t.key: t for t in checks}
    out = []
    for inst in instances:
        t = by_key.get(inst.id)
        use = None
        if inst.provider_id and inst.state == InstanceState.running:
            try:
                use = provider(inst.location).usage(inst.provider_id)
            except OnepaneError:
                use = None
        out.append({"id": inst.id, "location": inst.location, "up": bool(t and t.up),
                    "check_ms": t.latency_ms if t else None,
                    "cpu": use[0] if use else None, "memory": use[1] if use else None})
    return out
