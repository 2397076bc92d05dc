"""The health checks' transitions as events: a replica up or down, a site's front door up or
down (the doors are checked in a group of their own, named with frontdoors.GROUP_SUFFIX)."""

from __future__ import annotations

from ..events import EventLog
from ..traffic.health import Target
from .frontdoors import GROUP_SUFFIX


def say_transitions(events: EventLog, transitions: list[tuple[str, Target]]) -> None:
    for group, t in transitions:
        state = "up" if t.up else "down"
        why = f" ({t.last_error})" if t.last_error and not t.up else ""
        severity = "info" if t.up else "warning"
        if group.endswith(GROUP_SUFFIX):
            name = group.removesuffix(GROUP_SUFFIX)
            events.emit(f"frontdoor.{state}", f"{name}: the front door at {t.location} "
                        f"({t.host}:{t.port}) is {state}{why}", severity=severity,
                        location=t.location, subject=name)
        else:
            events.emit(f"health.{state}", f"{group}: replica {t.key} at {t.location} is "
                        f"{state}{why}", severity=severity, location=t.location, subject=group,
                        data={"instance": t.key})
