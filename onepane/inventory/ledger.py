"""The job ledger: every worker's job starts and ends, written many to a transaction.

Besides its own writes, a job costs two of bookkeeping: its start (running, one more attempt)
and its end (the result, together with the handler's writes). Made one transaction each by two
dozen workers at once, they queued on the store's one writer, and each spent more on the
transaction than on its statements (bench/provision.py). The ledger's thread writes what has
gathered while it wrote the last batch: all the starts with one `UPDATE … WHERE id IN …
RETURNING`, all the ends in one transaction (each handler's writes, one `UPDATE` executemany,
their events in one `INSERT`). If a batch of ends fails, its ends are written again one at a
time, so that the end whose write failed fails alone, as it would have on its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from ..events import EventLog
from ..model import UNFINISHED, Job, JobStatus
from ..store.tables import JobRow
from .views import job_view

log = logging.getLogger(__name__)
_JOBS = cast(Table, JobRow.__table__)
BATCH = 128  # at most this many starts or ends in one transaction

# Built once: each batch binds its values (building and hashing statements per job cost more
# than executing them).
_START = (update(_JOBS).where(_JOBS.c.id.in_(bindparam("b_ids", expanding=True)),
                              _JOBS.c.status.in_(UNFINISHED))
          .values(status=JobStatus.running, attempts=_JOBS.c.attempts + 1).returning(*_JOBS.c))
_START_ON_NODE = _START.where(or_(_JOBS.c.node.is_(None), _JOBS.c.node == bindparam("b_node")))
_END = update(_JOBS).where(_JOBS.c.id == bindparam("b_id"))
_ENDED = select(_JOBS).where(_JOBS.c.id.in_(bindparam("b_ids", expanding=True)))

Write = Callable[[Session], None]
T = TypeVar("T")


@dataclass
class _Item:
    job_id: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class _Start(_Item):
    row: JobRow | None = None


@dataclass
class _Write(_Item):
    fn: Callable[[Session], Any] | None = None
    result: Any = None


@dataclass
class _End(_Item):
    values: dict[str, Any] = field(default_factory=dict)
    write: Write | None = None
    ended: Job | None = None


class Ledger:
    def __init__(self, events: EventLog, node: Callable[[], str | None]) -> None:
        self.events = events
        self._node = node  # the runner's node, read at each batch (it is set when it joins)
        self._pending: list[_Item] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self, job_id: str) -> JobRow | None:
        """Mark the job running with one more attempt; the job as it is then (a detached row
        for the handler), or None if it has ended, is gone, or is another node's."""
        item = self._wait(_Start(job_id))
        return item.row

    def finish(self, job_id: str, status: JobStatus, result: dict[str, Any] | None,
               error: dict[str, Any] | None, write: Write | None) -> Job | None:
        """End the job, with `write` in the same transaction (if it raises, so does this, and
        nothing of the end is written); the job as it ended, None if it is gone."""
        item = self._wait(_End(job_id, values={
            "b_id": job_id, "status": status, "result": result, "error": error,
            "finished_at": datetime.now(UTC)}, write=write))
        return item.ended

    def write(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in a transaction shared with other writes of the moment, and return what it
        returned once that has committed; if `fn` raises, so does this, and nothing of it is
        written (the others are written without it)."""
        if threading.current_thread() is self._thread:  # a write made by a write: no waiting
            with self.events.tx() as s:  # on itself
                return fn(s)
        item = self._wait(_Write("", fn=fn))
        return cast(T, item.result)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)

    def _wait(self, item: Any) -> Any:
        with self._cond:
            if self._closed:
                raise RuntimeError("the job ledger is closed")
            self._pending.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="job-ledger",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed, and nothing left to write
                batch = self._pending
                self._pending = []
            writes = [i for i in batch if isinstance(i, _Write)]
            starts = [i for i in batch if isinstance(i, _Start)]
            ends = [i for i in batch if isinstance(i, _End)]
            for chunk in _chunks(writes):
                self._settle(chunk, lambda c: self._together(c, self._write_writes))
            for chunk in _chunks(starts):
                self._settle(chunk, self._write_starts)
            for chunk in _chunks(ends):
                self._settle(chunk, lambda c: self._together(c, self._write_ends))

    @staticmethod
    def _settle(items: list[Any], write: Callable[[list[Any]], None]) -> None:
        try:
            write(items)
        except BaseException as exc:
            for item in items:
                item.error = item.error or exc
        finally:
            for item in items:
                item.done.set()

    def _write_starts(self, items: list[_Start]) -> None:
        node = self._node()
        ids = [i.job_id for i in items]
        stmt, params = ((_START, {"b_ids": ids}) if node is None
                        else (_START_ON_NODE, {"b_ids": ids, "b_node": node}))
        with self.events.store.tx() as s:
            rows = {r.id: JobRow(**r._mapping) for r in s.connection().execute(stmt, params)}
            missing = [i for i in ids if i not in rows]
            if missing and node is not None:
                for job_id, owner in s.execute(select(JobRow.id, JobRow.node).where(
                        JobRow.id.in_(missing), JobRow.status.in_(UNFINISHED))):
                    log.warning("job %s is node %s's now", job_id, owner)
        for item in items:
            item.row = rows.get(item.job_id)

    def _together(self, items: list[Any], write: Callable[[list[Any]], None]) -> None:
        """`write` them in one transaction; if it fails, again one at a time, so that only the
        item whose write fails fails."""
        try:
            write(items)
        except Exception:
            if len(items) == 1:
                raise
            for item in items:
                self._settle([item], write)

    def _write_ends(self, items: list[_End]) -> None:
        with self.events.tx() as s:
            for item in items:
                if item.write is not None:
                    item.write(s)
            conn = s.connection()
            conn.execute(_END, [i.values for i in items])
            ended = {r.id: job_view(cast(JobRow, r))
                     for r in conn.execute(_ENDED, {"b_ids": [i.job_id for i in items]})}
        for item in items:
            item.ended = ended.get(item.job_id)

    def _write_writes(self, items: list[_Write]) -> None:
        with self.events.tx() as s:
            results = [i.fn(s) for i in items if i.fn is not None]
        for item, result in zip(items, results, strict=True):
            item.result = result


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
