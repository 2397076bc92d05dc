"""A deployment's SLA as its status shows it: measured from the reconciler's passes, carried
over a restart from the last status, and an event when it crosses its target."""

from __future__ import annotations

import time
from typing import Any

from ..events import EventLog
from ..policy.sla import SlaTracker
from ..spec import DeploymentSpec
from .state import DeploymentState


def track_sla(st: DeploymentState, name: str, last_status: dict[str, Any],
              spec: DeploymentSpec, available: bool, events: EventLog) -> dict[str, Any]:
    if st.sla is None:
        old = last_status.get("sla") or {}  # carry the figures over a restart
        budget = old.get("error_budget") or {}
        measured = float(old.get("measured_s") or 0)
        down = float(budget.get("used_down_s") or 0)
        st.sla = SlaTracker(spec.sla.target, up_s=measured - down, down_s=down,
                            violated=bool(old.get("violated")), warm_up=spec.sla.warm_up)
    tracker = st.sla
    tracker.target = spec.sla.target
    crossing = tracker.observe(time.monotonic(), available)
    if crossing:
        rep = tracker.report()
        events.emit(f"sla.{crossing}", f"{name}: availability {rep['availability']}% is "
                    f"{'below' if crossing == 'violation' else 'back above'} its "
                    f"{spec.sla.target}% target", subject=name,
                    severity="error" if crossing == "violation" else "info", data=rep)
    rep = tracker.report()
    rep["measured_s"] = round(rep["measured_s"])  # write the status at most once a second
    rep["error_budget"]["used_down_s"] = round(rep["error_budget"]["used_down_s"], 1)
    rep["error_budget"]["allowed_down_s"] = round(rep["error_budget"]["allowed_down_s"])
    rep["availability"] = round(rep["availability"], 3)
    return rep
