"""The store on both databases: migrations, paging, tag filters, idempotency keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from onepane.config import Settings
from onepane.core import Core
from onepane.model import JobStatus, new_id
from onepane.store.tables import InstanceRow, JobRow, LocationRow


@pytest.fixture(params=["sqlite", "postgresql"])
def core(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Core]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    c = Core(Settings(state_dir=tmp_path, database_url=url, locations=[]))
    c.store.migrate()
    if request.param == "postgresql":  # one database for the session: start each test clean
        with c.store.tx() as s:
            for t in ("events", "jobs", "instances", "volumes", "networks", "tokens", "locations"):
                s.execute(text(f"DELETE FROM {t}"))
    yield c
    c.stop()


def seed(core: Core, n: int) -> list[str]:
    ids = []
    with core.store.tx() as s:
        for loc in ("dc-a", "dc-b"):
            s.add(LocationRow(name=loc, provider="local", region="r"))
        s.flush()
        for i in range(n):
            iid = new_id("inst")
            ids.append(iid)
            s.add(InstanceRow(id=iid, name=f"web-{i}", location="dc-a" if i % 2 else "dc-b",
                              image="httpecho", size="small", state="running",
                              tags={"tier": "web" if i % 3 else "db", "n": str(i)}))
    return ids


def test_migrations_make_every_table(core: Core) -> None:
    names = set(inspect(core.store.engine).get_table_names())
    assert {"locations", "instances", "volumes", "networks", "jobs", "events", "tokens",
            "alembic_version"} <= names
    core.store.migrate()  # idempotent


def test_cursor_pages_walk_everything_once(core: Core) -> None:
    ids = seed(core, 250)
    seen = []
    cursor = None
    while True:
        page = core.ops.list_instances(limit=60, cursor=cursor)
        seen += [i.id for i in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids)


def test_filters_by_location_state_and_tags(core: Core) -> None:
    seed(core, 30)
    a = core.ops.list_instances(location="dc-a", limit=1000).items
    assert len(a) == 15 and {i.location for i in a} == {"dc-a"}
    db = core.ops.list_instances(tags={"tier": "db"}, limit=1000).items
    assert len(db) == 10 and all(i.tags["tier"] == "db" for i in db)
    both = core.ops.list_instances(tags={"tier": "db", "n": "3"}, location="dc-a").items
    assert [i.name for i in both] == ["web-3"]
    assert core.ops.list_instances(state="stopped").items == []
    assert [i.provider for i in core.ops.list_instances(provider="local", limit=1).items] == ["local"]


def test_idempotency_keys_are_unique(core: Core) -> None:
    with core.store.tx() as s:
        s.add(JobRow(id=new_id("job"), kind="k", status=JobStatus.queued, idempotency_key="abc"))
    with pytest.raises(IntegrityError), core.store.tx() as s:
        s.add(JobRow(id=new_id("job"), kind="k", status=JobStatus.queued, idempotency_key="abc"))


def test_events_page_in_order(core: Core) -> None:
    for i in range(7):
        core.events.emit("test.event", f"event {i}", subject=f"s{i % 2}")
    first = core.events.list(limit=5)
    rest = core.events.list(after=int(first.next_cursor or 0), limit=5)
    assert [e.message for e in first.items + rest.items] == [f"event {i}" for i in range(7)]
    assert rest.next_cursor is None
    assert len(core.events.list(subject="s1").items) == 3
