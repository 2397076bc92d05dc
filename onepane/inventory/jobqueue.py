"""The one way a change is asked for: a job, recorded with its rows in one transaction (the
ledger's), then carried out by the job runner; an idempotency key binds a job to the request
that made it. Job queries live here too."""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import IdempotencyMismatch, InvalidInput, NotFound, OnepaneError
from ..events import EventLog
from ..model import UNFINISHED, Job, JobStatus, Page, new_id
from ..providers.base import Feature, Provider
from ..store import fencing
from ..store.tables import InstanceRow, JobRow, NetworkRow, VolumeRow
from .jobs import JobRunner, chain_key
from .locations import Locations
from .paging import MAX_PAGE, decode_cursor, page
from .views import job_view

_JOBS = cast(Table, JobRow.__table__)
_NEW_JOB = insert(_JOBS).returning(*_JOBS.c)
LIVE_MOVE = "instance.live_move"


def fingerprint(kind: str, request: Any) -> str:
    """What an idempotency key is bound to: the operation and its arguments, canonically."""
    body = request.model_dump(mode="json") if hasattr(request, "model_dump") else request
    return hashlib.sha256(json.dumps([kind, body], sort_keys=True, default=str).encode()
                          ).hexdigest()[:32]


class Jobs:
    def __init__(self, events: EventLog, locations: Locations, runner: JobRunner) -> None:
        self.events = events
        self.store = events.store
        self.locations = locations
        self.runner = runner

    def submit(self, kind: str, target: str, location: str, params: dict[str, Any],
               idempotency_key: str | None, rows: Any, message: str,
               bound_to: Any = None) -> Job:
        job_id = new_id("job")
        if idempotency_key:
            params = {**params, "_request": fingerprint(kind, bound_to)}
        fence = fencing.current()  # the caller's: the ledger's thread writes the job

        def record(s: Session) -> JobRow:
            fencing.check(s, fence)  # a replica the reconciler adds: only while its node leads
            if rows:
                rows(s)
            job = JobRow(**s.connection().execute(_NEW_JOB, {
                "id": job_id, "kind": kind, "target": target, "location": location,
                "params": params, "status": JobStatus.queued,
                "idempotency_key": idempotency_key, "node": self.runner.node}).one()._mapping)
            self.events.emit("job.queued", message, location=location, subject=target,
                             session=s, data={"job": job_id, "kind": kind})
            return job
        try:
            # with the other requests' of the moment, in one transaction (the ledger's)
            job = self.runner.ledger.write(record)
        except IntegrityError:
            # Two requests with one idempotency key raced; the other one won.
            if (existing := self.job_for_key(idempotency_key)) is not None:
                return existing
            raise
        view = job_view(job)  # as committed: no second read of what was just written
        self.runner.submit(job_id, location, chain_key(kind, target, location))
        return view

    def job_for_key(self, key: str | None, kind: str | None = None,
                     request: Any = None) -> Job | None:
        """The job an earlier request with this key made, if that request was this one. A key
        is bound to what it was first used for (the operation and its arguments, like the
        IETF Idempotency-Key draft's method + path + body): reusing it for anything else is
        refused, never answered with the other request's job."""
        if key is None:
            return None
        if not key or len(key) > 128 or any(not 0x21 <= ord(c) <= 0x7E for c in key):
            raise InvalidInput("Idempotency-Key must be 1 to 128 visible ASCII characters",
                               field="Idempotency-Key")
        with self.store.tx() as s:
            row = s.scalar(select(JobRow).where(JobRow.idempotency_key == key))
            if row is None:
                return None
            bound = (row.params or {}).get("_request")
            if kind is not None and bound is not None and bound != fingerprint(kind, request):
                shown = key.split(":", 2)[2] if key.startswith("api:") else key
                raise IdempotencyMismatch(
                    f"Idempotency-Key {shown!r} was used for another request ({row.kind} "
                    f"{row.target or ''}); use a new key for a new request",
                    field="Idempotency-Key")
            return job_view(row)

    def get_job(self, job_id: str) -> Job:
        with self.store.tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r}")
            return job_view(row)

    def list_jobs(self, *, status: str | None = None, target: str | None = None, limit: int = 100,
                  cursor: str | None = None) -> Page[Job]:
        limit = max(1, min(limit, MAX_PAGE))
        q = select(JobRow).order_by(JobRow.id.desc()).limit(limit + 1)
        if status:
            q = q.where(JobRow.status == status)
        if target:
            q = q.where(JobRow.target == target)
        if cursor:
            q = q.where(JobRow.id < decode_cursor(cursor))
        return page(self.store, q, limit, job_view)

    def moving(self) -> set[str]:
        """Instances a live move is carrying right now (one indexed query)."""
        return set(self.live_moves())

    def live_moves(self) -> dict[str, str]:
        """instance -> the id of the live move carrying it, queued or under way (a queued one
        counts: a killed onepane's moves wait in the queue until it is back)."""
        return {target: job_id for job_id, target, _ in self._live_move_rows()}

    def _live_move_rows(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(job id, instance, params) of every live move queued or under way."""
        with self.store.tx() as s:
            return [(job_id, target, params or {}) for job_id, target, params in s.execute(
                select(JobRow.id, JobRow.target, JobRow.params).where(
                    JobRow.kind == LIVE_MOVE, JobRow.status.in_(UNFINISHED))) if target]

    def unfinished(self, kind: str, target: str) -> list[Job]:
        """The jobs of a kind on a target that are queued or under way."""
        with self.store.tx() as s:
            return [job_view(row) for row in s.scalars(select(JobRow).where(
                JobRow.kind == kind, JobRow.target == target,
                JobRow.status.in_(UNFINISHED)))]

    def moving_to(self) -> dict[str, str]:
        """instance -> the location a live move is carrying it to, for the moves under way."""
        return {target: params.get("to", "") for _, target, params in self._live_move_rows()}

    def require(self, location: str, feature: Feature) -> Provider:
        provider = self.locations.provider(location)
        provider.require(feature)
        return provider

    def on_failure(self, job: JobRow, exc: OnepaneError) -> None:
        """A create that failed for good leaves no half-made row behind."""
        tables: dict[str, type[InstanceRow | VolumeRow | NetworkRow]] = {
            "instance.create": InstanceRow, "volume.create": VolumeRow, "network.create": NetworkRow}
        table = tables.get(job.kind)
        if table is None:
            return
        with self.store.tx() as s:
            row = s.get(table, job.target)
            if row is not None and getattr(row, "provider_id", None) is None:
                s.delete(row)


class ResourceService:
    """What every per-resource service of the inventory works with: the event log (and its
    store), the locations' providers, and this one job queue."""

    def __init__(self, events: EventLog, locations: Locations, jobs: Jobs) -> None:
        self.events = events
        self.store = events.store
        self.locations = locations
        self.jobs = jobs
