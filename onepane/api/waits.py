"""Waiting for a job's end inside a request (GET /v1/jobs/{id}?wait=, POST …?wait=).

This node's runner hands every ended job to its watchers, so a waiting request needs no read
of its own once it has heard; a job another node runs is looked at once a second. A create that
waits starts listening before the job exists: no end is missed and none has to be read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from fastapi.concurrency import run_in_threadpool

from ..core import Core
from ..model import Job

ENDED = ("succeeded", "failed")


class JobEnd:
    """Listens for the end of one job of this node's, from the moment it is made."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.loop = asyncio.get_running_loop()
        self.heard: asyncio.Future[Job] = self.loop.create_future()
        self._lock = threading.Lock()
        self._job_id: str | None = None
        self._early: dict[str, Job] = {}  # ends heard before the job's id was known
        self._stop = core.runner.watch(self._on_end)

    def __enter__(self) -> JobEnd:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop()

    def expect(self, job_id: str) -> None:
        with self._lock:
            self._job_id = job_id
            early, self._early = self._early.get(job_id), {}
        if early is not None:
            self._hear(early)

    async def wait(self, wait: float, job: Job | None = None) -> Job:
        """The job once it has ended, or as it is when `wait` seconds are over. `job` is how
        it was last seen (a create's answer), if it was seen after this began listening."""
        assert self._job_id is not None
        deadline = self.loop.time() + wait
        while True:
            if job is None:
                job = await run_in_threadpool(self.core.ops.jobs.get_job, self._job_id)
            if job.status in ENDED or (left := deadline - self.loop.time()) <= 0:
                return job
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(self.heard), min(left, 1.0))
            job = None  # heard nothing for a second: look (another node may run it)

    def _on_end(self, ended: Job) -> None:  # in the runner's thread
        with self._lock:
            if self._job_id is None:
                self._early[ended.id] = ended
                return
            if ended.id != self._job_id:
                return
        self.loop.call_soon_threadsafe(self._hear, ended)

    def _hear(self, ended: Job) -> None:
        if not self.heard.done():
            self.heard.set_result(ended)


async def job_ended(core: Core, job_id: str, wait: float) -> Job:
    """GET's wait: the job once it has ended, or as it is when `wait` seconds are over."""
    if wait <= 0:
        return await run_in_threadpool(core.ops.jobs.get_job, job_id)
    with JobEnd(core) as end:
        end.expect(job_id)
        return await end.wait(wait)
