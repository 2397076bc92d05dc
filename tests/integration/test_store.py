"""The store on both databases: migrations, paging, tag filters, idempotency keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from onepane.config import Settings
from onepane.core import Core
from onepane.model import JobStatus, new_id
from onepane.store.db import Store
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
    """Every table the ORM declares exists after the migrations, with every column it
    declares: a table or column added to tables.py without a migration fails here."""
    from onepane.store.tables import Base
    db = inspect(core.store.engine)
    names = set(db.get_table_names())
    assert set(Base.metadata.tables) | {"alembic_version"} <= names
    for name, table in Base.metadata.tables.items():
        have = {c["name"] for c in db.get_columns(name)}
        assert {c.name for c in table.columns} <= have, name
    core.store.migrate()  # idempotent


def test_cursor_pages_walk_everything_once(core: Core) -> None:
    ids = seed(core, 250)
    seen = []
    cursor = None
    while True:
        page = core.ops.instances.list_instances(limit=60, cursor=cursor)
        seen += [i.id for i in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids)


def test_filters_by_location_state_and_tags(core: Core) -> None:
    seed(core, 30)
    a = core.ops.instances.list_instances(location="dc-a", limit=1000).items
    assert len(a) == 15 and {i.location for i in a} == {"dc-a"}
    db = core.ops.instances.list_instances(tags={"tier": "db"}, limit=1000).items
    assert len(db) == 10 and all(i.tags["tier"] == "db" for i in db)
    both = core.ops.instances.list_instances(tags={"tier": "db", "n": "3"}, location="dc-a").items
    assert [i.name for i in both] == ["web-3"]
    assert core.ops.instances.list_instances(state="stopped").items == []
    assert [i.provider for i in core.ops.instances.list_instances(
        provider="local", limit=1).items] == ["local"]


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


def test_sqlite_writers_queue_on_the_gate_and_readers_pass(tmp_path: Path) -> None:
    """Writers of one process wait their turn on a lock (not SQLite's sleep-and-poll); the lock
    is let go at commit and at rollback, and a read never takes it."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    gate = store.gate
    assert gate is not None and not gate.held
    with store.tx() as s:
        s.execute(text("SELECT count(*) FROM jobs"))
        assert not gate.held  # a read
        s.add(LocationRow(name="dc-a", provider="local", region="r"))
        s.flush()
        assert gate.held  # the first write
    assert not gate.held  # committed
    with pytest.raises(IntegrityError), store.tx() as s:
        s.add(LocationRow(name="dc-a", provider="local", region="r"))
    assert not gate.held  # rolled back

    # 16 threads x 20 write transactions at once: every one commits, none waits on a sleep
    def writes(t: int) -> None:
        for i in range(20):
            with store.tx() as s:
                s.add(JobRow(id=f"job-{t}-{i}", kind="k", status=JobStatus.succeeded))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(writes, range(16)))
    with store.tx() as s:
        assert s.scalar(text("SELECT count(*) FROM jobs")) == 320

    # a writer holds the gate; a reader in another thread is not held up; a second writer
    # waits, and past the gate's timeout gets SQLite's own "database is locked", writing nothing
    gate.timeout = 0.3
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.tx() as s:
            s.add(JobRow(id="job-holder", kind="k", status=JobStatus.queued))
            s.flush()
            holding.set()
            release.wait(10)
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        def count() -> int | None:
            with store.tx() as s:
                return s.scalar(text("SELECT count(*) FROM jobs"))
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(count).result(5) == 320
        with pytest.raises(OperationalError, match="database is locked"), store.tx() as s:
            s.add(JobRow(id="job-late", kind="k", status=JobStatus.queued))
            s.flush()
    finally:
        release.set()
        holder.join(10)
    assert not gate.held
    with store.tx() as s:
        assert s.get(JobRow, "job-late") is None and s.get(JobRow, "job-holder") is not None
    store.close()
