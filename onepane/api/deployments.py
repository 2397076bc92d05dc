"""Deployment routes: apply a spec, watch it, move it, fail it over."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..deploy.service import Deployment
from ..spec import parse_spec
from .deps import core, operator, viewer

router = APIRouter(prefix="/v1/deployments")


@router.get("", dependencies=[viewer])
def list_deployments(request: Request) -> list[Deployment]:
    return core(request).deployments.list()


@router.post("", status_code=201, dependencies=[operator])
async def apply_deployment(request: Request, force: bool = False) -> Deployment:
    """Create or update from a spec in JSON or YAML (Content-Type application/json or yaml).
    A spec that would serve from nowhere right now is refused unless `force`."""
    body = await request.body()  # bounded (bodylimits); parsed off the event loop
    spec = await run_in_threadpool(parse_spec, body, "request body")
    return await run_in_threadpool(core(request).deployments.apply, spec, force)


@router.get("/{name}", dependencies=[viewer])
def get_deployment(request: Request, name: str) -> Deployment:
    return core(request).deployments.get(name)


@router.get("/{name}/traffic", dependencies=[viewer])
def deployment_traffic(request: Request, name: str) -> dict[str, Any]:
    """What the data plane counted: served, retried, failed, per location; recent latency."""
    c = core(request)
    c.deployments.get(name)  # 404 for an unknown name
    plane = c.reconciler.planes.get(name)
    return plane.stats() if plane else {}


@router.get("/{name}/metrics", dependencies=[viewer])
def deployment_metrics(request: Request, name: str, metric: Annotated[str | None, Query(alias="name")] = None,
                       since: Annotated[float, Query(gt=0, le=31 * 86400)] = 3600) -> dict[str, Any]:
    """Stored series of the last `since` seconds (raw samples, then one-minute averages:
    each point is [ts, value, step]) and the live figures the policy engine sees."""
    c = core(request)
    c.deployments.get(name)
    live = c.metrics.live.get(name)
    return {"series": c.metrics.query(name, metric, since),
            "live": dataclasses.asdict(live) if live else None}


@router.delete("/{name}", status_code=204, dependencies=[operator])
def delete_deployment(request: Request, name: str) -> None:
    core(request).deployments.delete(name)


class Move(BaseModel):
    to: str
    live: bool = Field(default=False, description="move the running VM itself (vm locations)")
    bound_s: float = Field(default=300.0, gt=0, le=3600,
                           description="a live move that has not converged by then is cancelled")


@router.post("/{name}/move", dependencies=[operator], response_model=None)
def move_deployment(request: Request, name: str, body: Move) -> Deployment | dict[str, Any]:
    """Planned move: the target must be healthy; traffic shifts there and the source drains.
    With `live`, the running VM moves instead (202 and the jobs; each phase is an event)."""
    c = core(request)
    if body.live:
        jobs = c.moves.start(name, body.to, body.bound_s)
        return {"deployment": name, "to": body.to, "live": True,
                "jobs": [j.model_dump(mode="json") for j in jobs]}
    return c.deployments.move(name, body.to)


@router.post("/{name}/failover", dependencies=[operator])
def failover_deployment(request: Request, name: str) -> Deployment:
    return core(request).deployments.failover(name)


