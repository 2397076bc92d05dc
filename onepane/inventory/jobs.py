"""Jobs: every operation runs asynchronously, in its location's pool, and is recorded.

A job is a row before it is work: a crash at any point leaves a queued or running job that
`resume()` picks up again on start. That is safe because every handler is idempotent (creates
find what an earlier attempt made; destroys of what is gone succeed).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import NotFound, OnepaneError, TransientProviderError
from ..events import EventLog
from ..listeners import Listeners
from ..model import UNFINISHED, Job, JobStatus
from ..providers.base import Provider
from ..providers.registry import Registry
from ..retry import with_retry
from ..store.tables import JobRow
from .ledger import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a handler returns when its own writes belong with the job's end: `write` runs in
    the transaction that marks the job succeeded, so that the two land together, in one
    commit instead of two (bench/provision.py counts them)."""

    result: dict[str, Any]
    write: Callable[[Session], None]


Handler = Callable[[Provider, JobRow], dict[str, Any] | Outcome | None]
Failure = Callable[[JobRow, OnepaneError], None]


def chain_key(kind: str, target: str | None, location: str | None) -> str | None:
    """Jobs with one key run one at a time, in the order they were submitted: a reboot then a
    stop of one instance must end stopped, and two replications of one image to one location
    must not upload it twice."""
    if target is None:
        return None
    return f"{target}@{location}" if kind == "image.replicate" else target


class TakenOver(OnepaneError):
    """Another node claimed the job (this one missed its heartbeats): leave it to that one."""


class JobRunner:
    def __init__(self, events: EventLog, registry: Registry, *, attempts: int = 5,
                 backoff: float = 0.2) -> None:
        self.events = events
        self.registry = registry
        self.attempts = attempts
        self.backoff = backoff
        self._handlers: dict[str, tuple[Handler, Failure | None]] = {}
        self._repeatable: dict[str, Callable[[Provider], bool]] = {}
        self._chains: dict[str, deque[tuple[str, str]]] = {}  # key -> jobs waiting their turn
        self._chain_lock = threading.Lock()
        self.node: str | None = None  # set when the node joins: the jobs it runs carry it
        self._watchers: Listeners[Job] = Listeners()  # told when a job ends (long polls)
        self.ledger = Ledger(events, lambda: self.node)

    def register(self, kind: str, handler: Handler, on_failure: Failure | None = None,
                 repeatable: Callable[[Provider], bool] | None = None) -> None:
        """`repeatable(provider)` says whether running the handler twice is safe there; where
        it is not (a create on a provider that cannot recognise a retry), a failed attempt is
        never retried and an attempt a crash interrupted is not run again."""
        self._handlers[kind] = (handler, on_failure)
        if repeatable is not None:
            self._repeatable[kind] = repeatable

    def submit(self, job_id: str, location: str, chain: str | None = None) -> None:
        if chain is None:
            self.registry.submit(location, self._run, job_id)
            return
        with self._chain_lock:
            if chain in self._chains:  # another job of this resource is under way: queue
                self._chains[chain].append((job_id, location))
                return
            self._chains[chain] = deque()
        self._submit_link(job_id, location, chain)

    def _submit_link(self, job_id: str, location: str, chain: str) -> None:
        try:
            self.registry.submit(location, self._run_link, job_id, chain)
        except NotFound:
            self._finish(job_id, JobStatus.failed, error={"detail": "location is gone"})
            self._next_link(chain)

    def _run_link(self, job_id: str, chain: str) -> None:
        try:
            self._run(job_id)
        finally:
            self._next_link(chain)

    def _next_link(self, chain: str) -> None:
        with self._chain_lock:
            waiting = self._chains.get(chain)
            if not waiting:
                self._chains.pop(chain, None)
                return
            job_id, location = waiting.popleft()
        self._submit_link(job_id, location, chain)

    def resume(self) -> int:
        """On start: this node's unfinished jobs (and those no node has claimed yet)."""
        unfinished = JobRow.status.in_(UNFINISHED)
        with self.events.store.tx() as s:
            if self.node is not None:
                s.execute(update(JobRow).where(unfinished, JobRow.node.is_(None))
                          .values(node=self.node))
            rows = list(s.scalars(select(JobRow).where(unfinished, JobRow.node == self.node)
                                  .order_by(JobRow.created_at, JobRow.id)))
        return self._resubmit(rows)

    def take_over(self, nodes: list[str]) -> int:
        """Claim the unfinished jobs of nodes that stopped and run them here. Each claim is one
        conditional UPDATE (still that node's, still unfinished), so exactly one node wins it
        even if two leaders' passes overlapped."""
        unfinished = JobRow.status.in_(UNFINISHED)
        claimed: list[JobRow] = []
        with self.events.store.tx() as s:
            for row in s.scalars(select(JobRow).where(unfinished, JobRow.node.in_(nodes))
                                 .order_by(JobRow.created_at, JobRow.id)).all():
                won = s.execute(update(JobRow).where(JobRow.id == row.id, unfinished,
                                                     JobRow.node == row.node)
                                .values(node=self.node))
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(row)
        return self._resubmit(claimed)

    def _resubmit(self, rows: list[JobRow]) -> int:
        for row in rows:
            try:
                self.submit(row.id, row.location or "", chain_key(row.kind, row.target,
                                                                   row.location))
            except NotFound:
                self._finish(row.id, JobStatus.failed, error={"detail": "location is gone"})
        return len(rows)

    def _run(self, job_id: str) -> None:
        job = self._start(job_id)
        if job is None:
            return
        interrupted = job.attempts > 1  # an attempt before this one was cut short
        handler, on_failure = self._handlers[job.kind]
        try:
            provider = self.registry.get(job.location or "")
        except NotFound:
            self._finish(job_id, JobStatus.failed, error={"detail": "location is gone"})
            return
        repeatable = self._repeatable.get(job.kind, lambda _p: True)(provider)
        if interrupted and not repeatable:
            exc = OnepaneError(f"{job.kind} was interrupted and {provider.location} cannot "
                               "recognise a retried one, so it is not run again; the next "
                               "inventory sync shows whether it happened")
            if on_failure:
                on_failure(job, exc)
            self._finish(job_id, JobStatus.failed, error=exc.problem())
            return

        tries = 0

        def attempt() -> dict[str, Any] | Outcome | None:
            nonlocal tries
            tries += 1
            if tries > 1:  # a retry: counted, and only if the job is still this node's
                with self.events.store.tx() as s:
                    row = s.get(JobRow, job_id, with_for_update=True)
                    assert row is not None
                    if self.node is not None and row.node not in (None, self.node):
                        raise TakenOver(f"job {job_id} is node {row.node}'s now")
                    row.attempts += 1
                    job.attempts = row.attempts  # the handler sees that this is a retry
            return handler(provider, job)

        def retrying(n: int, exc: Exception) -> None:
            log.info("job %s attempt %d failed transiently: %s", job_id, n, exc)

        try:
            result = with_retry(attempt, attempts=self.attempts if repeatable else 1,
                                base=self.backoff,
                                on_retry=retrying)
            if isinstance(result, Outcome):  # its writes fail the job if they fail
                self._finish(job_id, JobStatus.succeeded, result=result.result,
                             write=result.write)
            else:
                self._finish(job_id, JobStatus.succeeded, result=result or {})
        except TakenOver as exc:  # this node was thought dead; the job runs elsewhere now
            log.warning("%s", exc.detail)
            return
        except OnepaneError as exc:
            problem = exc.problem()
            problem["transient"] = isinstance(exc, TransientProviderError)
            if on_failure:
                on_failure(job, exc)
            self._finish(job_id, JobStatus.failed, error=problem)
            self.events.emit("job.failed", f"{job.kind} {job.target or ''} failed: {exc.detail}",
                             severity="error", location=job.location, subject=job.target,
                             data={"job": job_id})
            return
        except Exception as exc:  # a bug: record it rather than lose the job silently
            log.exception("job %s crashed", job_id)
            if on_failure:
                on_failure(job, OnepaneError(str(exc)))
            self._finish(job_id, JobStatus.failed, error={"detail": f"internal error: {exc}"})

    def _start(self, job_id: str) -> JobRow | None:
        """Mark the job running with its first attempt counted (the ledger writes it, with
        other workers' starts); None if it has ended, is gone, or is another node's."""
        return self.ledger.start(job_id)

    def _finish(self, job_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
                error: dict[str, Any] | None = None,
                write: Callable[[Session], None] | None = None) -> None:
        ended = self.ledger.finish(job_id, status, result, error, write)
        if ended is None:
            return
        # after the commit, the job as it ended: no one reads it again
        for watcher in self._watchers.snapshot():
            watcher(ended)

    def close(self) -> None:
        self.ledger.close()

    def watch(self, watcher: Callable[[Job], None]) -> Callable[[], None]:
        """Call `watcher(job)` whenever a job of this node ends; returns the way to stop."""
        return self._watchers.add(watcher)
