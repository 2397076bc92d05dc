"""The parts that let onepane follow a large estate: the simulated data center's change feed,
a sync that writes only what changed, and tag filters through their own index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

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
    assert core.ops.instances.list_instances(location="sim-1", limit=1).items
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
    stored = {r.provider_id: r.state for r in core.ops.instances.list_instances(
        location="sim-1", limit=1000, state="stopped").items}
    assert all(listing.get(pid, "missing") == "stopped" for pid in stored)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Core, Clock]]:
    c = Core(Settings(state_dir=tmp_path, locations=[LocationCreate(
        name=f"sim-{n}", provider="sim", options={"instances": 500, "changes_per_minute": 600})
        for n in range(3)]))
    c.start(background=False)
    clock = Clock()
    for n in range(3):
        sim = c.registry.get(f"sim-{n}")
        assert isinstance(sim, SimProvider)
        sim.clock, sim._last = clock, clock.now
    yield c, clock
    c.stop()


class Writes:
    """The store's statements and commits while it is counting."""

    def __init__(self, core: Core) -> None:
        self.statements: list[str] = []
        self.commits = 0
        event.listen(core.store.engine, "before_cursor_execute", self._statement)
        event.listen(core.store.engine, "commit", self._commit)

    def _statement(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):
            self.statements.append(" ".join(statement.split()[:2]))

    def _commit(self, _c: Any) -> None:
        self.commits += 1


def test_a_round_writes_every_location_s_changes_in_one_transaction(
        three: tuple[Core, Clock]) -> None:
    core, clock = three
    assert set(core.sync.sync_all().values()) == {"ok"}  # first, full listings
    writes = Writes(core)
    core.sync.sync_all()  # nothing changed anywhere: one statement says they were synced
    assert writes.statements == ["UPDATE locations"] and writes.commits == 1
    synced = {loc.name: loc.last_sync for loc in core.locations.list()}
    assert all(synced.values())
    clock.now += 1.0  # 10 changes at each location
    writes.statements.clear()
    writes.commits = 0
    core.sync.sync_all()
    assert writes.commits == 1  # all three locations' changes, events and times together
    assert writes.statements.count("UPDATE instances") == 1
    assert writes.statements.count("UPDATE locations") == 1
    assert all(loc.last_sync > synced[loc.name] for loc in core.locations.list())  # type: ignore[operator]


def test_a_round_that_cannot_be_written_loses_nothing(three: tuple[Core, Clock]) -> None:
    core, clock = three
    core.sync.sync_all()
    core.locations.set_status("sim-1", "unreachable", "it did not answer")
    real = core.locations.record_synced

    def broken(*_: Any) -> None:
        raise RuntimeError("the store is gone")
    core.locations.record_synced = broken  # type: ignore[method-assign]
    clock.now += 1.0
    core.sync.sync_all()  # the changes seen are not written...
    core.locations.record_synced = real  # type: ignore[method-assign]
    assert core.sync._tokens == {}  # ...so every location's next pass lists everything
    core.sync.sync_all()
    for n in range(3):
        sim = core.registry.get(f"sim-{n}")
        listing = {o.provider_id: o.state for o in sim.list_instances()}
        stored = {i.provider_id: i.state for i in core.ops.instances.list_instances(
            location=f"sim-{n}", limit=1000).items if i.state != "missing"}
        assert stored == listing
    assert core.locations.get("sim-1").status == "ok"  # back, and said so
    said = [e.message for e in core.events.list(kind="location.status").items]
    assert said.count("location sim-1: unreachable -> ok") == 1


def test_tag_filters_follow_every_change_of_tags(core: Core) -> None:
    core.sync.sync_location("sim-1")
    red = core.ops.instances.list_instances(tags={"team": "t3"}, limit=1000)
    assert red.items and all(i.tags["team"] == "t3" for i in red.items)
    first = red.items[0]
    with core.store.tx() as s:
        row = s.get(InstanceRow, first.id)
        assert row is not None
        row.tags = {**row.tags, "team": "blue"}
    assert first.id not in {i.id for i in core.ops.instances.list_instances(tags={"team": "t3"},
                                                                  limit=1000).items}
    assert [i.id for i in core.ops.instances.list_instances(tags={"team": "blue"}).items] == [first.id]
    with core.store.tx() as s:
        s.delete(s.get(InstanceRow, first.id))
    with core.store.tx() as s:
        assert s.scalar(select(func.count()).select_from(InstanceTagRow).where(
            InstanceTagRow.instance_id == first.id)) == 0
