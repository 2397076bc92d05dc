"""A moment's grace before answering a create.

EC2 answers a create at once ("pending", "attaching") and clients poll until it is done. The
tools that wait do so with botocore's waiters, whose first retry comes 15 s after the first
look: a process instance that runs 0.2 s after RunInstances cost Ansible's ec2_instance 15 s,
and an attach the same. onepane's creates at its own locations usually end within that
moment, so the EC2 front end waits up to GRACE_S for the jobs it just queued to end, then
answers with the state as it is; a slow location (a cloud, a booting VM) is answered
"pending" after the grace, as EC2 would, and the client polls as it always does.
"""

from __future__ import annotations

import threading

from ...core import Core
from ...model import Job
from ..waits import ENDED

GRACE_S = 2.0


def settle(core: Core, job_ids: list[str], grace: float = GRACE_S) -> None:
    """Return once every job in `job_ids` has ended, or after `grace` seconds."""
    waiting = set(job_ids)
    done = threading.Event()
    lock = threading.Lock()

    def ended(job_id: str) -> None:
        with lock:
            waiting.discard(job_id)
            if not waiting:
                done.set()

    def heard(job: Job) -> None:  # in the job runner's thread
        if job.id in job_ids:
            ended(job.id)

    stop = core.runner.watch(heard)  # listening first: no end falls between look and wait
    try:
        for job_id in job_ids:
            if core.ops.jobs.get_job(job_id).status in ENDED:
                ended(job_id)
        if job_ids:
            done.wait(grace)
    finally:
        stop()
