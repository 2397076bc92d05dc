"""Elastic addresses: allocated from onepane's pool, associated with an instance or with a
deployment (then they follow its primary through failovers and moves)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..inventory.addresses import Address
from .deps import core, operator, viewer

router = APIRouter(prefix="/v1/addresses", tags=["addresses"])


class Association(BaseModel):
    instance: str | None = Field(default=None, description="an instance id (inst-…)")
    deployment: str | None = Field(default=None, description="a deployment's name: the address "
                                   "reaches whatever instance serves it, failovers included")
    reassociate: bool = Field(default=True, description="false: refuse if the address is "
                              "associated with something else")


def _view(a: Address) -> dict[str, Any]:
    return dataclasses.asdict(a)


@router.get("", dependencies=[viewer])
def list_addresses(request: Request) -> list[dict[str, Any]]:
    """Each address: what it is associated with, which instance it reaches now and where (or
    why it reaches nothing)."""
    return [_view(a) for a in core(request).addresses.find()]


@router.post("", status_code=201, dependencies=[operator])
def allocate(request: Request) -> dict[str, Any]:
    return _view(core(request).addresses.allocate())


@router.get("/{address_id}", dependencies=[viewer])
def get_address(request: Request, address_id: str) -> dict[str, Any]:
    return _view(core(request).addresses.get(address_id))


@router.post("/{address_id}/associate", dependencies=[operator])
def associate(request: Request, address_id: str, body: Association) -> dict[str, Any]:
    c = core(request)
    if body.instance is not None:
        c.ops.instances.get_instance(body.instance)  # 404 naming it, before anything changes
    if body.deployment is not None:
        c.deployments.get(body.deployment)
    return _view(c.addresses.associate(address_id, instance=body.instance,
                                       deployment=body.deployment,
                                       reassociate=body.reassociate))


@router.post("/{address_id}/disassociate", dependencies=[operator])
def disassociate(request: Request, address_id: str) -> dict[str, Any]:
    return _view(core(request).addresses.disassociate(address_id))


@router.delete("/{address_id}", status_code=204, dependencies=[operator])
def release(request: Request, address_id: str) -> None:
    """Only an address associated with nothing is released."""
    core(request).addresses.release(address_id)
