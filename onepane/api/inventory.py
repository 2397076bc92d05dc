"""Native REST routes: locations, instances, volumes, networks, images, jobs, events, tokens."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..model import (
    Event,
    Image,
    Instance,
    InstanceCreate,
    InstanceState,
    Job,
    Location,
    LocationCreate,
    LocationUpdate,
    Network,
    NetworkCreate,
    Node,
    Page,
    ProviderKind,
    Size,
    Volume,
    VolumeAttach,
    VolumeCreate,
)
from ..providers.base import Feature
from .deps import IdemKey, admin, core, operator, viewer
from .uploads import save_body
from .waits import JobEnd, job_ended

router = APIRouter(prefix="/v1")
Limit = Annotated[int, Query(ge=1, le=1000)]
Wait = Annotated[float, Query(ge=0, le=60, description="seconds to wait for the job to end")]
MAX_UPLOAD = 512 * 1024 * 1024


def accepted(response: Response, job: Job) -> Job:
    response.status_code = 202
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


# ---- locations -------------------------------------------------------------------------------

@router.get("/locations", dependencies=[viewer])
def list_locations(request: Request) -> list[Location]:
    return core(request).locations.list()


@router.post("/locations", status_code=201, dependencies=[admin])
def add_location(request: Request, spec: LocationCreate) -> Location:
    return core(request).locations.add(spec)


@router.get("/locations/{name}", dependencies=[viewer])
def get_location(request: Request, name: str) -> Location:
    return core(request).locations.get(name)


@router.patch("/locations/{name}", dependencies=[admin])
def edit_location(request: Request, name: str, body: LocationUpdate) -> Location:
    """Change labels (a merge patch: a value sets, null removes). Placement policies see the
    change at their next evaluation; a location from the config file keeps the edit on restart."""
    return core(request).locations.edit_labels(name, body.labels)


@router.delete("/locations/{name}", status_code=204, dependencies=[admin])
def remove_location(request: Request, name: str, force: bool = False) -> None:
    core(request).locations.remove(name, force)


@router.get("/locations/{name}/sizes", dependencies=[viewer])
def list_sizes(request: Request, name: str) -> list[Size]:
    sizes = core(request).registry.run(name, lambda p: p.list_sizes())
    return [Size(id=s.provider_id, cpu=s.cpu, memory_mb=s.memory_mb, disk_gb=s.disk_gb)
            for s in sizes]


class Cut(BaseModel):
    mode: Literal["silent", "down"] = "silent"


@router.post("/locations/{name}/cut", dependencies=[admin])
def cut_location(request: Request, name: str, body: Cut | None = None) -> dict[str, Any]:
    """Failure drill: make a netns location unreachable (silently, or with its link down)."""
    c = core(request)
    provider = c.locations.provider(name)
    provider.require(Feature.cut)
    mode = (body or Cut()).mode
    provider.cut(mode)
    c.events.emit("location.cut", f"location {name} cut off ({mode})", severity="warning",
                  location=name)
    return {"location": name, "cut": True, "mode": mode}


@router.post("/locations/{name}/restore", dependencies=[admin])
def restore_location(request: Request, name: str) -> dict[str, Any]:
    c = core(request)
    provider = c.locations.provider(name)
    provider.require(Feature.cut)
    provider.restore()
    c.events.emit("location.restored", f"location {name} reconnected", location=name)
    return {"location": name, "cut": False}


# ---- instances -------------------------------------------------------------------------------

@router.get("/instances", dependencies=[viewer])
def list_instances(request: Request, location: str | None = None,
                   provider: ProviderKind | None = None, state: InstanceState | None = None,
                   name: str | None = None,
                   tag: Annotated[list[str] | None, Query(description="key=value")] = None,
                   limit: Limit = 100, cursor: str | None = None,
                   sort: Annotated[str | None, Query(
                       pattern=r"^-?(created|name|state|location|image|size)$",
                       description="a column, `-` first for descending")] = None) -> Page[Instance]:
    tags = {}
    for t in tag or []:
        if "=" not in t:
            raise InvalidInput(f"tag filter {t!r} must be key=value", field="tag")
        k, v = t.split("=", 1)
        tags[k] = v
    if location is not None:  # a typo is not "nothing there": 404 naming the field
        core(request).locations.get(location)
    return core(request).ops.instances.list_instances(location=location, provider=provider, state=state,
                                            name=name, tags=tags, limit=limit, cursor=cursor,
                                            sort=sort)


@router.get("/inventory/summary", dependencies=[viewer])
def inventory_summary(request: Request) -> dict[str, dict[str, int]]:
    """Instance counts per location and state."""
    return core(request).ops.instances.summary()


@router.post("/instances", status_code=202, dependencies=[operator])
async def create_instance(request: Request, response: Response, req: InstanceCreate,
                          key: IdemKey, wait: Wait = 0) -> Job:
    """Starts the create (202 and its job); with `wait` (seconds, up to 60) the answer comes
    when the job has ended or the wait is over, as GET /v1/jobs/{id}?wait= does, in one
    request instead of two."""
    c = core(request)
    if wait <= 0:
        return accepted(response, await run_in_threadpool(c.ops.instances.create_instance, req, key))
    with JobEnd(c) as end:  # listening before the job exists: its end cannot be missed
        job = await run_in_threadpool(c.ops.instances.create_instance, req, key)
        end.expect(job.id)
        return accepted(response, await end.wait(wait, job))


@router.get("/instances/{instance_id}", dependencies=[viewer])
def get_instance(request: Request, instance_id: str) -> Instance:
    return core(request).ops.instances.get_instance(instance_id)


@router.get("/instances/{instance_id}/console", dependencies=[operator])
def instance_console(request: Request, instance_id: str,
                     max_bytes: Annotated[int, Query(ge=1, le=1048576)] = 65536) -> dict[str, Any]:
    """The last bytes the instance wrote to its console (a VM's serial port, a process's
    output). Operators only: consoles print what a viewer should not necessarily read."""
    return core(request).ops.instances.console(instance_id, max_bytes)


@router.post("/instances/{instance_id}/{action}", status_code=202, dependencies=[operator])
def instance_action(request: Request, response: Response, instance_id: str,
                    action: Literal["start", "stop", "reboot", "suspend", "resume"],
                    key: IdemKey) -> Job:
    return accepted(response, core(request).ops.instances.instance_action(instance_id, action, key))


@router.delete("/instances/{instance_id}", status_code=202, dependencies=[operator])
def destroy_instance(request: Request, response: Response, instance_id: str,
                     key: IdemKey) -> Job:
    return accepted(response, core(request).ops.instances.destroy_instance(instance_id, key))


# ---- volumes ---------------------------------------------------------------------------------

@router.get("/volumes", dependencies=[viewer])
def list_volumes(request: Request, location: str | None = None, limit: Limit = 100,
                 cursor: str | None = None) -> Page[Volume]:
    return core(request).ops.volumes.list_volumes(location=location, limit=limit, cursor=cursor)


@router.post("/volumes", status_code=202, dependencies=[operator])
def create_volume(request: Request, response: Response, req: VolumeCreate,
                  key: IdemKey) -> Job:
    return accepted(response, core(request).ops.volumes.create_volume(req, key))


@router.get("/volumes/{volume_id}", dependencies=[viewer])
def get_volume(request: Request, volume_id: str) -> Volume:
    return core(request).ops.volumes.get_volume(volume_id)


@router.post("/volumes/{volume_id}/attach", status_code=202, dependencies=[operator])
def attach_volume(request: Request, response: Response, volume_id: str, req: VolumeAttach) -> Job:
    return accepted(response, core(request).ops.volumes.attach_volume(volume_id, req))


@router.post("/volumes/{volume_id}/detach", status_code=202, dependencies=[operator])
def detach_volume(request: Request, response: Response, volume_id: str) -> Job:
    return accepted(response, core(request).ops.volumes.detach_volume(volume_id))


@router.delete("/volumes/{volume_id}", status_code=202, dependencies=[operator])
def delete_volume(request: Request, response: Response, volume_id: str) -> Job:
    return accepted(response, core(request).ops.volumes.delete_volume(volume_id))


# ---- networks --------------------------------------------------------------------------------

@router.get("/networks", dependencies=[viewer])
def list_networks(request: Request, location: str | None = None, limit: Limit = 100,
                  cursor: str | None = None) -> Page[Network]:
    return core(request).ops.networks.list_networks(location=location, limit=limit, cursor=cursor)


@router.post("/networks", status_code=202, dependencies=[operator])
def create_network(request: Request, response: Response, req: NetworkCreate,
                   key: IdemKey) -> Job:
    return accepted(response, core(request).ops.networks.create_network(req, key))


@router.get("/networks/{network_id}", dependencies=[viewer])
def get_network(request: Request, network_id: str) -> Network:
    return core(request).ops.networks.get_network(network_id)


@router.delete("/networks/{network_id}", status_code=202, dependencies=[operator])
def delete_network(request: Request, response: Response, network_id: str) -> Job:
    """Refused (409) while instances are on the network."""
    return accepted(response, core(request).ops.networks.delete_network(network_id))


# ---- images ----------------------------------------------------------------------------------

@router.get("/images", dependencies=[viewer])
def list_images(request: Request, response: Response,
                location: Annotated[list[str] | None, Query()] = None,
                name: str | None = None, limit: Limit = 200) -> list[Image]:
    """Images as each location's provider lists them, all locations asked concurrently. The
    answer comes within a deadline with what has come by then; the locations that did not
    answer are named in the `Onepane-Unanswered` header (`name: why`, `; `-separated)."""
    images, missing = core(request).ops.images.images_within(location, name, limit)
    if missing:
        response.headers["Onepane-Unanswered"] = "; ".join(
            f"{n}: {why}" for n, why in sorted(missing.items())).encode("ascii", "replace") \
            .decode()[:2000]
    return images


@router.post("/locations/{name}/images", status_code=201, dependencies=[operator])
async def upload_app_image(request: Request, name: str) -> Image:
    """Upload an app image (.tar.gz with onepane-app.json) to a process-based location."""
    c = core(request)
    provider = c.locations.provider(name)
    provider.require(Feature.app_images)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.tar.gz"
        await save_body(request, path, MAX_UPLOAD)
        img = await run_in_threadpool(provider.import_image, path)
    c.events.emit("image.imported", f"app image {img.name} imported at {name}", location=name,
                  subject=img.name)
    return Image(id=img.provider_id, name=img.name, location=name, extra=img.extra)


# ---- jobs, events, sync ----------------------------------------------------------------------

@router.get("/jobs", dependencies=[viewer])
def list_jobs(request: Request, status: str | None = None, target: str | None = None,
              limit: Limit = 100, cursor: str | None = None) -> Page[Job]:
    return core(request).ops.jobs.list_jobs(status=status, target=target, limit=limit, cursor=cursor)


@router.get("/jobs/{job_id}", dependencies=[viewer])
async def get_job(request: Request, job_id: str, wait: Wait = 0) -> Job:
    """The job; with `wait` (seconds, up to 60), once it has ended or when the wait is over,
    whichever comes first: a client learns the end at once instead of polling for it."""
    return await job_ended(core(request), job_id, wait)


# an event id: a 64-bit integer in every database (beyond it, a clear 422, not a driver error)
EventId = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


@router.get("/events", dependencies=[viewer])
def list_events(request: Request, after: EventId = None, kind: str | None = None,
                subject: str | None = None, location: str | None = None,
                limit: Limit = 100, before: EventId = None,
                severity: Annotated[str | None, Query(
                    pattern=r"^(info|warning|error)(,(info|warning|error))*$")] = None,
                since: datetime | None = None, until: datetime | None = None) -> Page[Event]:
    """The event log, oldest first after `after`; `before` pages back in time (the newest
    before that id); `severity` (comma list), `since`/`until` (ISO 8601) narrow it."""
    return core(request).events.list(after=after, kind=kind, subject=subject, location=location,
                                      limit=limit, before=before,
                                      severity=severity.split(",") if severity else None,
                                      since=since, until=until)


@router.get("/events/stream", dependencies=[viewer], response_class=StreamingResponse,
            responses={200: {"description": "server-sent events, one per event written",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream_events(request: Request, kind: str | None = None) -> StreamingResponse:
    """Server-sent events: every event as it is written."""
    c = core(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)

    def deliver(ev: Event) -> None:
        if not kind or ev.kind.startswith(kind):
            loop.call_soon_threadsafe(_offer, queue, ev)

    unsubscribe = c.events.subscribe(deliver)

    async def body() -> AsyncIterator[str]:
        server = getattr(request.app.state, "server", None)
        quiet = 0.0
        try:
            yield ": connected\n\n"
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    # A stopping server ends its streams itself, cleanly, instead of having
                    # them cancelled under it (which printed tracebacks at every Ctrl-C).
                    if server is not None and server.should_exit:
                        return
                    quiet += 1.0
                    if quiet >= 15:
                        quiet = 0.0
                        yield ": keep-alive\n\n"
                    continue
                yield f"id: {ev.id}\nevent: {ev.kind}\ndata: {ev.model_dump_json()}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _offer(queue: asyncio.Queue[Event], ev: Event) -> None:
    if not queue.full():  # a slow consumer loses events rather than stalling everyone
        queue.put_nowait(ev)


@router.post("/sync", dependencies=[operator])
def sync_now(request: Request) -> dict[str, str]:
    """Observe every location now, rather than at the next periodic round."""
    return core(request).sync.sync_all(wait=True)


# ---- tokens ----------------------------------------------------------------------------------

class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "operator", "viewer"] = "operator"


@router.post("/tokens", status_code=201, dependencies=[admin])
def create_token(request: Request, body: Annotated[TokenCreate, Body()]) -> dict[str, str]:
    tid, token = core(request).tokens.create(body.name, body.role)
    return {"id": tid, "token": token, "role": body.role,
            "note": "shown once; onepane stores only its hash"}


@router.get("/whoami", dependencies=[viewer])
def whoami(request: Request) -> dict[str, str]:
    """The token in use: its name and role (the console shows who is logged in)."""
    c = core(request)
    if c.settings.dev:
        return {"id": "dev", "name": "dev mode (no authentication)", "role": "admin"}
    auth = request.headers.get("authorization", "")
    return c.tokens.identify(auth.removeprefix("Bearer ").strip())


@router.get("/nodes", dependencies=[viewer])
def list_nodes(request: Request) -> list[Node]:
    """The control plane's nodes, each with its role (leader, standby, down) and how long ago
    it was last heard from."""
    return core(request).cluster.membership.list()


@router.get("/tokens", dependencies=[admin])
def list_tokens(request: Request) -> list[dict[str, str]]:
    """Every token's id, name, role and creation time (the tokens themselves are not kept)."""
    return core(request).tokens.list()


@router.delete("/tokens/{token_id}", status_code=204, dependencies=[admin])
def revoke_token(request: Request, token_id: str) -> None:
    core(request).tokens.revoke(token_id)



# ---- access keys (EC2 query API) ------------------------------------------------------------

@router.post("/access-keys", status_code=201, dependencies=[admin])
def create_access_key(request: Request, body: Annotated[TokenCreate, Body()]) -> dict[str, str]:
    """A key id + secret for SigV4 clients (aws CLI, boto3, Terraform) of the /ec2/ front end."""
    key_id, secret = core(request).access_keys.create(body.name, body.role)
    return {"access_key_id": key_id, "secret_access_key": secret, "role": body.role,
            "note": "the secret is shown once"}


@router.get("/access-keys", dependencies=[admin])
def list_access_keys(request: Request) -> list[dict[str, str]]:
    return core(request).access_keys.list()


@router.delete("/access-keys/{key_id}", status_code=204, dependencies=[admin])
def revoke_access_key(request: Request, key_id: str) -> None:
    core(request).access_keys.revoke(key_id)
