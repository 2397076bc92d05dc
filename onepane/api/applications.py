"""Deployed application routes: an imported application (a catalog app) deployed as one — its
tiers in start order, its network policy — listed, moved live as one, and removed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..deploy.applications import AppDeploy
from .deps import core, operator, viewer

router = APIRouter(prefix="/v1/applications")


class Deploy(AppDeploy):
    app: str = Field(min_length=1, description="the catalog application (onepane apps list)")


class AppMove(BaseModel):
    to: str
    bound_s: float = Field(default=300.0, gt=0, le=3600,
                           description="the whole move's bound: every tier within it")


@router.get("", dependencies=[viewer])
def list_applications(request: Request) -> list[dict[str, Any]]:
    return core(request).applications.list()


@router.post("", status_code=201, dependencies=[operator])
def deploy_application(request: Request, body: Deploy) -> dict[str, Any]:
    """One deployment per tier (created in the collection's start order as each earlier tier
    serves), one security group per tier holding the `allow` rules."""
    req = AppDeploy.model_validate(body.model_dump(by_alias=True, exclude={"app"}))
    return core(request).applications.deploy(body.app, req)


@router.get("/{name}", dependencies=[viewer])
def get_application(request: Request, name: str) -> dict[str, Any]:
    return core(request).applications.get(name)


@router.delete("/{name}", status_code=204, dependencies=[operator])
def delete_application(request: Request, name: str) -> None:
    core(request).applications.undeploy(name)


@router.post("/{name}/move", status_code=202, dependencies=[operator])
def move_application(request: Request, name: str, body: AppMove) -> dict[str, Any]:
    """A live move of every tier to `to` (one job; each tier's phases are events)."""
    job = core(request).applications.move(name, body.to, body.bound_s)
    return {"application": name, "to": body.to, "job": job.model_dump(mode="json")}
