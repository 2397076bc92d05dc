"""Catalog routes: import an OVA or a disk, list, export, replicate to locations."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from ..errors import InvalidInput
from ..images import apps
from ..images.catalog import CatalogImage
from ..images.disk import FORMATS
from ..model import Job
from .deps import core, operator, viewer
from .uploads import save_body

router = APIRouter(prefix="/v1/catalog")


@router.get("", dependencies=[viewer])
def list_images(request: Request) -> list[CatalogImage]:
    return core(request).catalog.all()


@router.post("", status_code=201, dependencies=[operator])
async def import_image(
        request: Request, name: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")],
        version: Annotated[str, Query(min_length=1, max_length=32)] = "1",
        deployment_option: Annotated[str | None, Query(max_length=128)] = None) -> CatalogImage:
    """Upload an OVA (tar, or gzip-compressed tar) or a disk image (raw, qcow2, vmdk, vdi,
    vhdx, vpc) as the request body. Every disk is inspected before it is kept: one that names
    a backing file, data file, outside extent or parent image is refused (422). `warnings`
    in the reply say what was accepted with a reservation (e.g. a declared size that differs
    from the file, verified by the manifest)."""
    c = core(request)
    with tempfile.TemporaryDirectory(dir=c.catalog.blobs, prefix=".upload-") as tmp:
        path = Path(tmp) / "upload"
        _, digest = await save_body(request, path, c.settings.max_image_bytes)
        return await run_in_threadpool(c.catalog.import_file, path, name, version, digest,
                                       deployment_option, "upload")


@router.get("/apps", dependencies=[viewer])
def list_apps(request: Request) -> list[dict[str, Any]]:
    """Applications: the systems of each imported VirtualSystemCollection, as tiers in their
    StartupSection order (order, start delay, waiting for the guest, start and stop actions),
    each with its hardware and the locations where it is ready."""
    return apps.applications(core(request).catalog.all())


@router.get("/apps/{app_id}", dependencies=[viewer])
def get_app(request: Request, app_id: str) -> dict[str, Any]:
    return apps.application(core(request).catalog.all(), app_id)


@router.delete("/apps/{app_id}", dependencies=[operator])
def delete_app(request: Request, app_id: str) -> dict[str, Any]:
    """Every image of an imported application, off the catalog and every location: all of
    them, or none while one is still needed (409 naming what needs it)."""
    c = core(request)
    deleted = c.catalog.delete_application(app_id)
    for image_id in deleted:
        c.annotations.forget(image_id)
    return {"deleted": deleted}


@router.get("/apps/{app_id}/export", dependencies=[viewer])
def export_app(request: Request, app_id: str,
               ovf_version: Annotated[str, Query(pattern=r"^(1\.0|2\.0)$")] = "1.0"
               ) -> FileResponse:
    """The application as one OVA: a VirtualSystemCollection of its systems with its
    StartupSection."""
    c = core(request)
    tmp = tempfile.mkdtemp(dir=c.catalog.blobs, prefix=".export-")
    try:  # one look at the catalog: the export names the file after the application
        out = c.catalog.export_application(app_id, Path(tmp), ovf_version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(out, filename=out.name, media_type="application/octet-stream",
                        background=BackgroundTask(shutil.rmtree, tmp, True))


@router.get("/{image_id}", dependencies=[viewer])
def get_image(request: Request, image_id: str) -> CatalogImage:
    return core(request).catalog.get(image_id)


@router.delete("/{image_id}", status_code=204, dependencies=[operator])
def delete_image(request: Request, image_id: str) -> None:
    """Off the catalog and every location holding a replica, and its disks off onepane's
    store unless another image has the same content. 409, nothing removed, while a
    deployment names it, a replication of it runs, an instance was made from it, a location
    holding it is not running, or it is one system of an application (delete that)."""
    c = core(request)
    c.catalog.delete(image_id)
    c.annotations.forget(image_id)  # what EC2 or OCCI kept about it went with it


class Replicate(BaseModel):
    to: list[str] = Field(min_length=1)


@router.post("/{image_id}/replicate", status_code=202, dependencies=[operator])
def replicate(request: Request, image_id: str, body: Replicate) -> list[Job]:
    return core(request).catalog.replicate(image_id, body.to)


@router.get("/{image_id}/export", dependencies=[viewer])
def export(request: Request, image_id: str, format: str = "ova",
           ovf_version: Annotated[str, Query(pattern=r"^(1\.0|2\.0)$")] = "1.0") -> FileResponse:
    """Download as an OVA (OVF 1.0 or 2.0, SHA256 manifest, streamOptimized VMDK) or a disk."""
    if format != "ova" and format not in FORMATS:
        raise InvalidInput(f"format must be ova or one of {', '.join(FORMATS)}", field="format")
    c = core(request)
    img = c.catalog.get(image_id)
    tmp = tempfile.mkdtemp(dir=c.catalog.blobs, prefix=".export-")
    ext = "ova" if format == "ova" else format
    out = c.catalog.export(image_id, Path(tmp) / f"{img.name}.{ext}", format, ovf_version)
    return FileResponse(out, filename=out.name, media_type="application/octet-stream",
                        background=BackgroundTask(shutil.rmtree, tmp, True))
