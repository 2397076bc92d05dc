"""Schedules on the real reconciler and real local replicas, with the wall clock injected: the
replicas follow the windows as the clock is moved, and each change is a logged decision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onepane.config import Settings
from onepane.core import Core
from onepane.deploy.reconciler import TAG
from onepane.deploy.spec import parse_spec
from onepane.model import LocationCreate
from tests.helpers import kill_instances, wait_for


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    c = Core(Settings(state_dir=tmp_path, dns_port=None, locations=[
        LocationCreate(name="dc-a", provider="local"), LocationCreate(name="dc-b", provider="local")]))
    c.start(background=False)  # no loops: the test drives the reconciler's passes itself
    yield c
    c.stop()
    kill_instances(tmp_path)


def running(core: Core) -> dict[str, int]:
    core.reconciler.run_once()
    out: dict[str, int] = {}
    for i in core.ops.list_instances(tags={TAG: "office"}).items:
        if i.state == "running":
            out[i.location] = out.get(i.location, 0) + 1
    return out


def test_replicas_follow_the_schedule_as_the_clock_moves(core: Core) -> None:
    clock = Clock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))  # a Monday, 07:00
    core.reconciler.clock = clock
    core.deployments.apply(parse_spec({
        "name": "office", "image": "httpecho", "size": "nano", "replicas": {"dc-a": 1, "dc-b": 1},
        "policies": {"schedule": [
            {"cron": "0 8 * * 1-5", "duration": 3600, "locations": ["dc-a"]},  # weekdays 8-9 at dc-a
            {"cron": "0 12 * * *", "duration": 1800}]}}),  # every day 12:00-12:30 everywhere
        force=True)  # closed by the injected clock at first, and maybe by the real one too
    assert running(core) == {}
    clock.now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    wait_for(lambda: running(core) == {"dc-a": 1}, 20, what="dc-a on at 08:00")
    clock.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    wait_for(lambda: running(core) == {}, 20, what="off at 09:00")
    clock.now = datetime(2026, 11, 23, 12, 10, tzinfo=UTC)
    wait_for(lambda: running(core) == {"dc-a": 1, "dc-b": 1}, 20, what="everything on at 12:10")
    clock.now = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)  # Saturday: the weekday window stays shut
    wait_for(lambda: running(core) == {}, 20, what="off on Saturday morning")
    kinds = [(e.kind, e.location) for e in core.events.list(kind="policy.", limit=50).items]
    assert kinds == [("policy.schedule_off", "dc-a"), ("policy.schedule_off", "dc-b"),  # first look
                     ("policy.schedule_on", "dc-a"), ("policy.schedule_off", "dc-a"),
                     ("policy.schedule_on", "dc-a"), ("policy.schedule_on", "dc-b"),
                     ("policy.schedule_off", "dc-a"), ("policy.schedule_off", "dc-b")]
