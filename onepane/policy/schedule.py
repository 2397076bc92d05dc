"""Schedules: cron-style windows during which a deployment, or some of its locations, is
active. Outside every window that covers it, a location runs no replicas."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from ..deploy.spec import Window


def window_open(w: Window, now: datetime) -> bool:
    """True if the last time `w.cron` fired (in its timezone) is less than `duration` ago."""
    local = now.astimezone(ZoneInfo(w.timezone))
    # A firing exactly now counts as open: step a microsecond ahead before looking back.
    last: datetime = croniter(w.cron, local + timedelta(microseconds=1)).get_prev(datetime)
    return local - last < timedelta(seconds=w.duration)


def active_locations(windows: list[Window], locations: Iterable[str], now: datetime) -> set[str]:
    locs = set(locations)
    if not windows:
        return locs
    active: set[str] = set()
    for w in windows:
        if window_open(w, now):
            active |= set(w.locations) if w.locations is not None else locs
    return active & locs
