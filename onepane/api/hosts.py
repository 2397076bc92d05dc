"""The hypervisor hosts of a location (vm locations of remote hosts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ..model import Job
from ..providers.vm.hosts import HostSpec
from .deps import core, operator, viewer
from .inventory import Wait, accepted
from .waits import job_ended

router = APIRouter(prefix="/v1/locations/{name}/hosts", tags=["hosts"])


class Maintenance(BaseModel):
    bound_s: float = Field(default=300.0, gt=0, le=3600,
                           description="each live move that has not converged by then is "
                                       "cancelled (its VM stays on the host)")


@router.get("", dependencies=[viewer])
def list_hosts(request: Request, name: str) -> list[dict[str, Any]]:
    """Each host: state (up, unreachable, maintenance, fenced), CPUs, memory, what its VMs are given,
    free memory, how many VMs. A docker location lists its Docker hosts (containers count as
    VMs here; memory committed is their sizes')."""
    return core(request).hosts.list(name)


@router.post("", status_code=201, dependencies=[operator])
def add_host(request: Request, name: str, body: HostSpec) -> dict[str, Any]:
    """A host joins the location once it answers over its URI."""
    return core(request).hosts.add(name, body)


@router.delete("/{host}", status_code=204, dependencies=[operator])
def remove_host(request: Request, name: str, host: str) -> None:
    """Only an empty host leaves: empty it with maintenance first."""
    core(request).hosts.remove(name, host)


@router.post("/{host}/maintenance", status_code=202, dependencies=[operator])
async def enter_maintenance(request: Request, response: Response, name: str, host: str,
                            body: Maintenance | None = None, wait: Wait = 0) -> Job:
    """Empty the host: nothing new is placed there, and its running VMs move live to the
    other hosts (a job; each move is a `host.moved` event)."""
    from fastapi.concurrency import run_in_threadpool
    c = core(request)
    job = await run_in_threadpool(c.hosts.maintenance, name, host,
                                  (body or Maintenance()).bound_s)
    if wait:
        job = await job_ended(c, job.id, wait)
    return accepted(response, job)


@router.post("/{host}/activate", dependencies=[operator])
def activate(request: Request, name: str, host: str) -> dict[str, Any]:
    """Let the host take VMs again."""
    return core(request).hosts.activate(name, host)
