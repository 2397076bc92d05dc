"""The job ledger on both databases: starts and ends written many to a transaction, and one
failing end failing alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onepane.errors import NotFound
from onepane.events import EventLog
from onepane.inventory.ledger import Ledger
from onepane.model import JobStatus
from onepane.store.db import Store
from onepane.store.tables import JobRow
from tests.helpers import wait_for


@pytest.fixture(params=["sqlite", "postgresql"])
def events(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = Store(url)
    store.migrate()
    with store.tx() as s:
        s.execute(text("DELETE FROM events"))
        s.execute(text("DELETE FROM jobs"))
    yield EventLog(store)
    store.close()


def jobs(events: EventLog, n: int, status: JobStatus = JobStatus.queued) -> list[str]:
    ids = [f"job-l{i}" for i in range(n)]
    with events.store.tx() as s:
        s.add_all(JobRow(id=i, kind="k", target=f"t-{i}", location="dc-a", status=status,
                         params={}) for i in ids)
    return ids


def commits(events: EventLog) -> list[int]:
    counted = [0]
    event.listen(events.store.engine, "commit", lambda _c: counted.__setitem__(0, counted[0] + 1))
    return counted


def test_ends_that_gather_are_written_in_one_transaction(events: EventLog) -> None:
    ids = jobs(events, 40)
    ledger = Ledger(events, lambda: None)
    try:
        assert [r.attempts if r else None for r in map(ledger.start, ids[:2])] == [1, 1]
        # the ledger is held by the first end's write; the 39 others gather behind it
        entered, release = threading.Event(), threading.Event()

        def held(s: Session) -> None:
            entered.set()
            release.wait(10)
        counted = commits(events)
        with ThreadPoolExecutor(40) as pool:
            first = pool.submit(ledger.finish, ids[0], JobStatus.succeeded, {"n": 0}, None, held)
            assert entered.wait(10)
            rest = [pool.submit(ledger.finish, i, JobStatus.succeeded, {"n": n}, None,
                                lambda s, i=i: events.emit("x.done", i, subject=i, session=s))
                    for n, i in enumerate(ids[1:], 1)]
            wait_for(lambda: len(ledger._pending) == 39, 10, what="the ends to gather")
            release.set()
            ended = [first.result(10)] + [f.result(10) for f in rest]
        assert [(e.id, e.status, e.result) for e in ended if e] == [
            (i, "succeeded", {"n": n}) for n, i in enumerate(ids)]
        assert counted[0] == 2  # the held end's transaction, then the 39 others' in one
        assert sorted(e.subject for e in events.list(kind="x.done", limit=100).items) == \
            sorted(ids[1:])
        # a start of a job that has ended: None, and the job is left as it is
        assert ledger.start(ids[0]) is None
    finally:
        ledger.close()


def test_a_failing_end_fails_alone(events: EventLog) -> None:
    ids = jobs(events, 6, JobStatus.running)
    ledger = Ledger(events, lambda: None)
    entered, release = threading.Event(), threading.Event()

    def held(s: Session) -> None:
        entered.set()
        release.wait(10)

    def failing(s: Session) -> None:
        events.emit("x.half", "written, then rolled back", session=s)
        raise NotFound("no instance 'inst-gone'", field="instance")
    try:
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(ledger.finish, ids[0], JobStatus.succeeded, {}, None, held)
            assert entered.wait(10)
            outcomes: list[Any] = [
                pool.submit(ledger.finish, i, JobStatus.succeeded, {}, None,
                            failing if i == ids[3] else None) for i in ids[1:]]
            wait_for(lambda: len(ledger._pending) == 5, 10, what="the ends to gather")
            release.set()
            first.result(10)
            with pytest.raises(NotFound, match="inst-gone"):
                outcomes[2].result(10)
            assert all(f.result(10).status == "succeeded" for n, f in enumerate(outcomes)
                       if n != 2)
        with events.store.tx() as s:
            assert s.get(JobRow, ids[3]).status == "running"  # type: ignore[union-attr]
        assert events.list(kind="x.half").items == []
    finally:
        ledger.close()


def test_a_closed_ledger_refuses_new_work(events: EventLog) -> None:
    ids = jobs(events, 1)
    ledger = Ledger(events, lambda: None)
    ledger.close()
    with pytest.raises(RuntimeError, match="closed"):
        ledger.start(ids[0])


def test_writes_of_the_moment_share_a_transaction_and_fail_alone(events: EventLog) -> None:
    """What API requests record (a create's rows, its job) goes through the ledger too: the
    ones that gather share one commit, and the one that breaks a constraint fails by itself."""
    ids = jobs(events, 1)
    ledger = Ledger(events, lambda: None)
    entered, release = threading.Event(), threading.Event()

    def held(s: Session) -> str:
        entered.set()
        release.wait(10)
        return "held"

    def add(job_id: str) -> Any:
        def fn(s: Session) -> str:
            s.add(JobRow(id=job_id, kind="k", status=JobStatus.queued, params={}))
            events.emit("x.added", job_id, subject=job_id, session=s)
            s.flush()
            return job_id
        return fn
    try:
        counted = commits(events)
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(ledger.write, held)
            assert entered.wait(10)
            # six new jobs and one whose id is taken (the constraint fails at its flush)
            new = [pool.submit(ledger.write, add(f"job-w{n}")) for n in range(6)]
            taken = pool.submit(ledger.write, add(ids[0]))
            wait_for(lambda: len(ledger._pending) == 7, 10, what="the writes to gather")
            release.set()
            assert first.result(10) == "held"
            assert [f.result(10) for f in new] == [f"job-w{n}" for n in range(6)]
            with pytest.raises(IntegrityError):
                taken.result(10)
        # (the held one wrote nothing) the batch of seven rolled back; then each of the seven
        # on its own: six commits
        assert counted[0] == 6
        # and writes that gather and all succeed: one commit
        entered.clear()
        release.clear()
        counted[0] = 0
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(ledger.write, held)
            assert entered.wait(10)
            more = [pool.submit(ledger.write, add(f"job-m{n}")) for n in range(5)]
            wait_for(lambda: len(ledger._pending) == 5, 10, what="the writes to gather")
            release.set()
            assert [f.result(10) for f in more] == [f"job-m{n}" for n in range(5)]
        assert counted[0] == 1
        assert sorted(e.subject for e in events.list(kind="x.added", limit=100).items) == \
            [f"job-m{n}" for n in range(5)] + [f"job-w{n}" for n in range(6)]
    finally:
        ledger.close()
