"""The parts that let onepane follow a large estate: the simulated data center's change feed,
a sync that writes only what changed, and tag filters through their own index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from onepane.config import Settings
from onepane.core import Core
from onepane.model import LocationCreate
from onepane.providers.sim import SimProvider
from onepane.store.tables import InstanceRow, InstanceTagRow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_change_feed_answers_what_changed_since_a_token() -> None:
    clock = Clock()
    sim = SimProvider("s", {"instances": 1000, "changes_per_minute": 6000}, clock=clock)
    start = sim.changes_since(None)
    assert start is not None and start.changed == [] and start.vanished == []
    clock.now += 1.0  # 100 changes
    changes = sim.changes_since(start.token)
    assert changes is not None
    touched = {o.provider_id for o in changes.changed} | set(changes.vanished)
    assert 0 < len(touched) <= 100
    listing = {o.provider_id: o.state for o in sim.list_instances()}
    assert all(o.state == listing[o.provider_id] for o in changes.changed)
    assert not set(changes.vanished) & set(listing)
    assert sim.changes_since(changes.token).changed == []  # nothing since
    assert sim.changes_since("999999999") is None  # a token it never gave: list everything


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    c = Core(Settings(state_dir=tmp_path, locations=[LocationCreate(
        name="sim-1", provider="sim", options={"instances": 5000, "changes_per_minute": 3000})]))
    c.start(background=False)
    yield c
    c.stop()


def test_a_sync_on_a_change_feed_writes_only_what_changed(core: Core) -> None:
    sim = core.registry.get("sim-1")
    assert isinstance(sim, SimProvider)
    clock = Clock()
    sim.clock, sim._last = clock, clock.now
    listings = 0
    full = sim.list_instances

    def counted() -> list:  # type: ignore[type-arg]
        nonlocal listings
        listings += 1
        return full()
    sim.list_instances = counted  # type: ignore[method-assign]
    assert core.sync.sync_location("sim-1") == "ok"  # the first pass lists everything
    assert core.ops.list_instances(location="sim-1", limit=1).items
    with core.store.tx() as s:
        assert s.scalar(select(func.count()).select_from(InstanceRow)) == 5000
        before = {r[0]: r[1] for r in s.execute(select(InstanceRow.id, InstanceRow.updated_at))}
    clock.now += 2.0  # 100 changes at the location
    assert core.sync.sync_location("sim-1") == "ok"
    assert listings == 1  # the second pass read the change feed, not a listing
    with core.store.tx() as s:
        after = {r[0]: r[1] for r in s.execute(select(InstanceRow.id, InstanceRow.updated_at))}
    written = [i for i in after if after[i] != before.get(i)]
    assert 0 < len(written) <= 100  # what changed, not the 5,000 instances there
    listing = {o.provider_id: o.state for o in full()}
    stored = {r.provider_id: r.state for r in core.ops.list_instances(
        location="sim-1", limit=1000, state="stopped").items}
    assert all(listing.get(pid, "missing") == "stopped" for pid in stored)


def test_tag_filters_follow_every_change_of_tags(core: Core) -> None:
    core.sync.sync_location("sim-1")
    red = core.ops.list_instances(tags={"team": "t3"}, limit=1000)
    assert red.items and all(i.tags["team"] == "t3" for i in red.items)
    first = red.items[0]
    with core.store.tx() as s:
        row = s.get(InstanceRow, first.id)
        assert row is not None
        row.tags = {**row.tags, "team": "blue"}
    assert first.id not in {i.id for i in core.ops.list_instances(tags={"team": "t3"},
                                                                  limit=1000).items}
    assert [i.id for i in core.ops.list_instances(tags={"team": "blue"}).items] == [first.id]
    with core.store.tx() as s:
        s.delete(s.get(InstanceRow, first.id))
    with core.store.tx() as s:
        assert s.scalar(select(func.count()).select_from(InstanceTagRow).where(
            InstanceTagRow.instance_id == first.id)) == 0
