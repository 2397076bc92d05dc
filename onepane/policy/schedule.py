"""Schedules: cron-style windows during which a deployment, or some of its locations, is
active. Outside every window that covers it, a location runs no replicas."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from ..spec import Window

_local = threading.local()


def _cron(expr: str, at: datetime) -> croniter:
    """Parsing a cron expression costs far more than stepping it: keep one parsed iterator per
    expression (per thread, since an iterator holds its position) and move it to `at`."""
    cache: dict[str, croniter] = _local.__dict__.setdefault("cache", {})
    it = cache.get(expr)
    if it is None:
        it = cache[expr] = croniter(expr, at)
    else:
        it.set_current(at, force=True)
    return it


_answers: dict[tuple[str, float, str], tuple[datetime, datetime, bool]] = {}


def state(w: Window, now: datetime) -> tuple[bool, datetime]:
    """(is the window open now, the next time that can change). Many deployments share a
    schedule (business hours...): the answer is kept, per window, for as long as it holds."""
    key = (w.cron, w.duration, w.timezone)
    known = _answers.get(key)
    if known is not None and known[0] <= now < known[1]:
        return known[2], known[1]
    is_open, until = _compute(w, now)
    until = until.astimezone(now.tzinfo)  # compared once a pass: same zone, no offset look-ups
    if len(_answers) > 10_000:
        _answers.clear()
    _answers[key] = (now, until, is_open)
    return is_open, until


def _compute(w: Window, now: datetime) -> tuple[bool, datetime]:
    local = now.astimezone(ZoneInfo(w.timezone))
    # A firing exactly now counts as open: step a microsecond ahead before looking back.
    last: datetime = _cron(w.cron, local + timedelta(microseconds=1)).get_prev(datetime)
    end = last + timedelta(seconds=w.duration)
    if local < end:
        return True, end
    nxt: datetime = _cron(w.cron, local).get_next(datetime)
    return False, nxt


def window_open(w: Window, now: datetime) -> bool:
    return state(w, now)[0]


def active_locations(windows: list[Window], locations: Iterable[str], now: datetime) -> set[str]:
    """The locations some open window activates (all of them when there is no schedule)."""
    return active_until(windows, locations, now)[0]


def active_until(windows: list[Window], locations: Iterable[str], now: datetime
                 ) -> tuple[set[str], datetime | None]:
    """The active locations, and the first time a window opens or closes (None: no window)."""
    locs = set(locations)
    active: set[str] = set()
    edge: datetime | None = None
    for w in windows:
        is_open, until = state(w, now)
        if is_open:
            active |= locs if w.locations is None else set(w.locations)
        if edge is None or until < edge:
            edge = until
    return (active & locs if windows else locs), edge
