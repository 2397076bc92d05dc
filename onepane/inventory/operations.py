"""Operations on instances, volumes and networks: the same calls for every location.

A request is validated synchronously (so bad input is a 4xx that leaves nothing behind), then
recorded as desired state plus a job, then carried out by the job runner.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import (
    Conflict,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    OnepaneError,
    TransientProviderError,
)
from ..events import EventLog
from ..model import (
    UNFINISHED,
    Image,
    Instance,
    InstanceCreate,
    InstanceState,
    Job,
    JobStatus,
    Network,
    NetworkCreate,
    Page,
    Volume,
    VolumeAttach,
    VolumeCreate,
    new_id,
)
from ..providers.base import Feature, InstanceSpec, Provider
from ..store import fencing
from ..store.tables import InstanceRow, InstanceTagRow, JobRow, LocationRow, NetworkRow, VolumeRow
from ..store.tags import tag_rows
from .jobs import Handler, JobRunner, Outcome, chain_key
from .locations import Locations
from .views import instance_view, instance_view_from_columns, job_view, network_view, volume_view

ACTIONS = {"start": Feature.stop_start, "stop": Feature.stop_start, "reboot": Feature.reboot,
           "suspend": Feature.suspend, "resume": Feature.suspend}
ENDS_IN = {"stop": InstanceState.stopped, "suspend": InstanceState.suspended}
MAX_PAGE = 1000
IMAGE_LIST_DEADLINE_S = 10.0  # a listing across locations answers with what came by then
_INSTANCES = cast(Table, InstanceRow.__table__)
_JOBS = cast(Table, JobRow.__table__)
# A create's statements, built once: each create binds its values (building and hashing a
# statement per create cost more than executing it; bench/provision.py)
_NEW_INSTANCE = insert(_INSTANCES)
_NEW_TAGS = insert(cast(Table, InstanceTagRow.__table__))
_NEW_JOB = insert(_JOBS).returning(*_JOBS.c)
_CREATED = (update(_INSTANCES).where(_INSTANCES.c.id == bindparam("b_id"))
            .returning(_INSTANCES.c.name, _INSTANCES.c.location))
LIVE_MOVE = "instance.live_move"
VALIDATE_TIMEOUT_S = 10.0
VALIDATED_FOR = 30.0  # seconds a location's yes to an (image, size) is taken as still true


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


SORTABLE = {"created": InstanceRow.id, "name": InstanceRow.name, "state": InstanceRow.state,
            "location": InstanceRow.location, "image": InstanceRow.image,
            "size": InstanceRow.size}
SORT_FIELD = {"id": "id", "name": "name", "state": "state", "location": "location",
              "image": "image", "size": "size"}


def encode_sort_cursor(value: Any, last_id: str) -> str:
    raw = json.dumps([str(value), last_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_sort_cursor(cursor: str) -> tuple[str, str]:
    """A page's end: (its sort value, its id); an old plain-id cursor still reads."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", field="cursor") from exc
    if raw.startswith("["):
        try:
            value, last = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise InvalidInput("malformed cursor", field="cursor") from exc
        if not isinstance(last, str) or not re.fullmatch(r"[a-z]+-[0-9a-f]+", last):
            raise InvalidInput("malformed cursor", field="cursor")
        return str(value), last
    last = decode_cursor(cursor)
    return last, last


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", field="cursor") from exc
    if not re.fullmatch(r"[a-z]+-[0-9a-f]+", value):
        raise InvalidInput("malformed cursor", field="cursor")
    return value


def every(fetch: Callable[..., Page[Any]], **kw: Any) -> Iterator[Any]:
    """All items of a paged listing (list_instances, list_volumes, ...), a page at a time."""
    cursor = None
    while True:
        page = fetch(limit=MAX_PAGE, cursor=cursor, **kw)
        yield from page.items
        if not (cursor := page.next_cursor):
            return


def fingerprint(kind: str, request: Any) -> str:
    """What an idempotency key is bound to: the operation and its arguments, canonically."""
    body = request.model_dump(mode="json") if hasattr(request, "model_dump") else request
    return hashlib.sha256(json.dumps([kind, body], sort_keys=True, default=str).encode()
                          ).hexdigest()[:32]


def fitting_size(provider: Provider, cpus: int, memory_mb: int, option: str | None) -> str:
    """The smallest size (memory first, then CPUs) that gives a catalog image's deployment
    option what it asks for: `--size auto`."""
    fits = [s for s in provider.list_sizes()
            if (s.cpu or 0) >= cpus and (s.memory_mb or 0) >= memory_mb]
    if not fits:
        raise InvalidInput(f"no size at {provider.location} has {cpus} CPUs and {memory_mb} MiB "
                           f"(what {'option ' + option if option else 'the image'} asks for)",
                           field="size")
    return min(fits, key=lambda s: (s.memory_mb or 0, s.cpu or 0, s.provider_id)).provider_id


class Operations:
    def __init__(self, events: EventLog, locations: Locations, runner: JobRunner,
                 answer_deadline: float = IMAGE_LIST_DEADLINE_S) -> None:
        self.events = events
        self.store = events.store
        self.locations = locations
        self.runner = runner
        self.answer_deadline = answer_deadline  # how long a listing waits for a location
        self._validated: dict[tuple[str, str, str], float] = {}  # (location, image, size) -> until
        self._validating: dict[tuple[str, str, str], Future[None]] = {}  # being asked now
        self._validating_lock = threading.Lock()
        # Set by the core to the image catalog's: what a location boots for a catalog image.
        self.boot_image: Callable[[str, str, str | None, dict[str, str]], Any] | None = None
        handlers: dict[str, Handler] = {
            "instance.create": self._do_create, "instance.start": self._do_action,
            "instance.stop": self._do_action, "instance.reboot": self._do_action,
            "instance.suspend": self._do_action, "instance.resume": self._do_action,
            "instance.resize": self._do_resize,
            "instance.destroy": self._do_destroy, "volume.create": self._do_volume_create,
            "volume.attach": self._do_volume_attach, "volume.detach": self._do_volume_detach,
            "volume.delete": self._do_volume_delete, "network.create": self._do_network_create,
            "network.delete": self._do_network_delete,
        }
        for kind, handler in handlers.items():
            runner.register(kind, handler, self._on_failure)
        runner.register("instance.create", self._do_create, self._on_failure,
                        repeatable=lambda p: p.capabilities.supports(Feature.idempotent_create))

    # ---- instances -----------------------------------------------------------------------

    def list_instances(self, *, location: str | None = None, provider: str | None = None,
                       state: str | None = None, tags: dict[str, str] | None = None,
                       name: str | None = None, limit: int = 100,
                       cursor: str | None = None, sort: str | None = None) -> Page[Instance]:
        """`sort`: name, state, location, image, size or created, `-` first for descending;
        pages are keyset pages over (that column, id), so every page costs the same."""
        limit = max(1, min(limit, MAX_PAGE))
        column, descending = SORTABLE.get((sort or "created").lstrip("-")), (sort or "").startswith("-")
        if column is None:
            raise InvalidInput(f"sort by one of {', '.join(SORTABLE)} (- first: descending)",
                               field="sort")
        # Plain columns, not ORM entities: hydrating 100 objects per page was most of its cost.
        q = (select(*InstanceRow.__table__.c, LocationRow.provider.label("provider_kind"))
             .join(LocationRow, LocationRow.name == InstanceRow.location).limit(limit + 1))
        order = [column.desc(), InstanceRow.id.desc()] if descending else [column, InstanceRow.id]
        q = q.order_by(*dict.fromkeys(order))
        if location:
            q = q.where(InstanceRow.location == location)
        if provider:
            q = q.where(LocationRow.provider == provider)
        if state:
            q = q.where(InstanceRow.state == state)
        if name:
            q = q.where(InstanceRow.name.contains(name, autoescape=True))
        value, last = decode_sort_cursor(cursor) if cursor else (None, None)
        for k, v in (tags or {}).items():
            # A probe of the tag table per row, in page order: the page stops after `limit`
            # matches instead of sorting every instance with the tag. Where a planner turns it
            # into a join over the tag index, the cursor bounds that side too, so a late page
            # does not read the tag index from its start.
            tagged = select(InstanceTagRow.instance_id).where(
                InstanceTagRow.instance_id == InstanceRow.id, InstanceTagRow.key == k,
                InstanceTagRow.value == v)
            if last is not None and column is InstanceRow.id:
                tagged = tagged.where(InstanceTagRow.instance_id < last if descending
                                      else InstanceTagRow.instance_id > last)
            q = q.where(tagged.exists())
        if cursor:
            after = (column < value) | ((column == value) & (InstanceRow.id < last)) if descending \
                else (column > value) | ((column == value) & (InstanceRow.id > last))
            q = q.where(InstanceRow.id < last if descending and column is InstanceRow.id else
                        InstanceRow.id > last if column is InstanceRow.id else after)
        page = self._page(q, limit, instance_view_from_columns, columns=True)
        if page.next_cursor and page.items:
            tail = page.items[-1]
            page.next_cursor = encode_sort_cursor(
                getattr(tail, SORT_FIELD[column.key]) if column is not InstanceRow.id else tail.id,
                tail.id)
        return page

    def summary(self) -> dict[str, dict[str, int]]:
        """Instance counts per location and state, for the overview (one GROUP BY)."""
        q = select(InstanceRow.location, InstanceRow.state, func.count()).group_by(
            InstanceRow.location, InstanceRow.state)
        out: dict[str, dict[str, int]] = {}
        with self.store.tx() as s:
            for loc, state, n in s.execute(q):
                out.setdefault(loc, {})[state] = n
        return out

    def get_instance(self, instance_id: str) -> Instance:
        with self.store.tx() as s:
            row = self._instance(s, instance_id)
            loc = s.get(LocationRow, row.location)
            return instance_view(row, loc.provider if loc else None)

    def create_instance(self, req: InstanceCreate, idempotency_key: str | None = None) -> Job:
        if (existing := self._job_for_key(idempotency_key, "instance.create", req)) is not None:
            return existing
        image, user_data, size = req.image, req.user_data, req.size
        hardware: dict[str, Any] = {}
        provider = self.locations.provider(req.location)
        if self.boot_image is not None and req.image.startswith("img-"):
            provider.require(Feature.boot_images, "image")
            boot = self.boot_image(req.image, req.location, req.deployment_option, req.properties)
            image, user_data = boot.provider_image_id, boot.user_data
            hardware = {"disks": boot.extra_disks, "nics": boot.nics}
            if size == "auto":
                size = fitting_size(provider, boot.cpus, boot.memory_mb, boot.deployment_option)
        elif req.deployment_option or req.properties:
            raise InvalidInput("deployment options and properties belong to catalog images "
                               "(img-...)", field="properties")
        if req.user_data is not None:
            if req.image.startswith("img-"):
                raise InvalidInput("a catalog image gets its OVF environment as user data; give "
                                   "properties instead", field="user_data")
            provider.require(Feature.user_data, "user_data")
        self._validate(req.location, image, size)
        inst_id = new_id("inst")
        params = {"name": req.name, "image": image, "size": size, "tags": req.tags,
                  "network": self._provider_network(req), "user_data": user_data,
                  "ssh_keys": req.ssh_keys, "groups": req.security_groups, **hardware}

        def rows(s: Session) -> None:  # Core inserts: an ORM flush cost more than they do
            conn = s.connection()
            conn.execute(_NEW_INSTANCE, {
                "id": inst_id, "name": req.name, "location": req.location, "image": req.image,
                "size": size, "state": InstanceState.pending, "tags": req.tags,
                "network": req.network})
            if req.tags:
                conn.execute(_NEW_TAGS, tag_rows(inst_id, req.tags))
        return self.submit("instance.create", inst_id, req.location, params, idempotency_key, rows,
                           f"create instance {req.name} ({inst_id}) at {req.location}", req)

    def instance_action(self, instance_id: str, action: str,
                        idempotency_key: str | None = None) -> Job:
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; use {', '.join(ACTIONS)}",
                               field="action")
        if (existing := self._job_for_key(idempotency_key, f"instance.{action}",
                                          instance_id)) is not None:
            return existing
        inst = self.get_instance(instance_id)
        provider = self.locations.provider(inst.location)
        provider.require(ACTIONS[action], "action")
        if inst.state in (InstanceState.pending, InstanceState.missing):
            raise Conflict(f"instance {instance_id} is {inst.state}; cannot {action} it",
                           field="state")
        return self.submit(f"instance.{action}", instance_id, inst.location, {}, idempotency_key,
                           None, f"{action} instance {inst.name} ({instance_id})", instance_id)

    def resize_instance(self, instance_id: str, size: str) -> Job:
        """A stopped instance takes another of its location's sizes (at its next start)."""
        inst = self.get_instance(instance_id)
        provider = self.locations.provider(inst.location)
        provider.require(Feature.resize, "size")
        if inst.state != InstanceState.stopped:
            raise Conflict(f"instance {instance_id} is {inst.state}; stop it to resize it",
                           field="state")
        self._validate(inst.location, inst.image, size)
        return self.submit("instance.resize", instance_id, inst.location, {"size": size}, None,
                           None, f"resize instance {inst.name} ({instance_id}) to {size}")

    def _do_resize(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        provider.resize_instance(self._provider_id(job.target or ""), job.params["size"])
        with self.events.tx() as s:
            row = self._instance(s, job.target or "")
            row.size = job.params["size"]
            self.events.emit("instance.resized", f"instance {row.name} ({row.id}) is now "
                             f"{row.size}", location=row.location, subject=row.id, session=s)
        return {"size": job.params["size"]}

    def _validate(self, location: str, image: str, size: str) -> None:
        """Ask the location whether it has this image and size, unless it said yes within the
        last VALIDATED_FOR seconds: a burst of creates of one kind asks once, not once each
        (each asking a cloud's API, behind the location's few quick workers). In the
        location's pool with a deadline: a hung endpoint answers 503 for its own location's
        requests and holds no API thread for long."""
        key = (location, image, size)
        now = time.monotonic()
        if self._validated.get(key, 0.0) > now:
            return
        with self._validating_lock:  # the same question already asked: wait for its answer
            asked = self._validating.get(key)
            if asked is None:
                asked = self._validating[key] = Future()
                mine = True
            else:
                mine = False
        if not mine:
            asked.result(timeout=VALIDATE_TIMEOUT_S + 1)  # its answer, or its error, raised
            return
        try:
            self.locations.registry.run(location, lambda p: p.validate(image, size),
                                        timeout=VALIDATE_TIMEOUT_S)
            if len(self._validated) > 10_000:
                self._validated.clear()
            self._validated[key] = now + VALIDATED_FOR
            asked.set_result(None)
        except BaseException as exc:
            asked.set_exception(exc)
            raise
        finally:
            with self._validating_lock:
                self._validating.pop(key, None)

    def destroy_instance(self, instance_id: str, idempotency_key: str | None = None) -> Job:
        if (existing := self._job_for_key(idempotency_key, "instance.destroy",
                                          instance_id)) is not None:
            return existing
        inst = self.get_instance(instance_id)
        return self.submit("instance.destroy", instance_id, inst.location, {}, idempotency_key,
                           None, f"destroy instance {inst.name} ({instance_id})", instance_id)

    def retag(self, resource_id: str, add: dict[str, str], remove: dict[str, str | None]) -> None:
        """Set and remove onepane tags on an instance or volume (not pushed to the provider).

        `remove` maps a key to the value it must have to be removed, or None for any value.
        """
        with self.events.tx() as s:
            row: InstanceRow | VolumeRow
            if resource_id.startswith("vol-"):
                row = self._volume(s, resource_id)
            else:
                row = self._instance(s, resource_id)
            tags = dict(row.tags or {})
            tags.update(add)
            for key, value in remove.items():
                if key in tags and (value is None or tags[key] == value):
                    del tags[key]
            row.tags = tags
            self.events.emit("tags.changed", f"tags of {resource_id} changed", location=row.location,
                             subject=resource_id, session=s,
                             data={"set": sorted(add), "removed": sorted(remove)})

    def connect_network(self, instance_id: str, network_id: str | None) -> Instance:
        """Join an existing instance to a network of its location (None: leave it), where the
        location's networks are address plans that an instance joins at any time."""
        with self.events.tx() as s:
            row = self._instance(s, instance_id)
            self.locations.provider(row.location).require(Feature.attach_network, "network")
            if network_id is not None:
                net = s.get(NetworkRow, network_id)
                if net is None or net.location != row.location:
                    raise InvalidInput(f"no network {network_id!r} at {row.location}",
                                       field="network")
                if row.network not in (None, network_id):
                    raise Conflict(f"instance {instance_id} is on network {row.network} already",
                                   field="network")
            row.network = network_id
            self.events.emit("instance.network", f"instance {row.name} ({instance_id}) "
                             + (f"joined network {network_id}" if network_id else
                                "left its network"), location=row.location, subject=instance_id,
                             session=s)
        return self.get_instance(instance_id)

    def list_images(self, locations: list[str] | None = None, name: str | None = None,
                    limit: int = 200) -> list[Image]:
        """Images as each location's provider lists them, all locations asked concurrently."""
        return self.images_within(locations, name, limit)[0]

    def images_within(self, locations: list[str] | None = None, name: str | None = None,
                      limit: int = 200) -> tuple[list[Image], dict[str, str]]:
        """The images of the locations that answered within the deadline, and for each one
        that did not, why: one hung cloud held a listing of every location for a minute."""
        registry = self.locations.registry
        names = locations or registry.names()
        futures = {n: registry.submit(n, lambda n=n: registry.get(n).list_images()) for n in names}
        deadline_s = self.answer_deadline
        concurrent.futures.wait(futures.values(), timeout=deadline_s)
        missing: dict[str, str] = {}
        answers: dict[str, list[Any]] = {}
        for n, fut in futures.items():
            if not fut.done():
                fut.cancel()
                missing[n] = f"did not answer within {deadline_s:g} s"
            elif (exc := fut.exception()) is not None:
                if len(names) == 1 or not isinstance(exc, OnepaneError):
                    raise exc
                missing[n] = exc.detail
            else:
                answers[n] = fut.result()
        out = [Image(id=img.provider_id, name=img.name, location=n, extra=img.extra)
               for n, imgs in answers.items() for img in imgs
               if not name or name.lower() in img.name.lower()][:limit]
        if len(names) == 1 and missing:
            raise TransientProviderError(f"location {names[0]} {missing[names[0]]}")
        return out, missing

    # ---- volumes -------------------------------------------------------------------------

    def list_volumes(self, *, location: str | None = None, limit: int = 100,
                     cursor: str | None = None) -> Page[Volume]:
        limit = max(1, min(limit, MAX_PAGE))
        q = select(VolumeRow).order_by(VolumeRow.id).limit(limit + 1)
        if location:
            q = q.where(VolumeRow.location == location)
        if cursor:
            q = q.where(VolumeRow.id > decode_cursor(cursor))
        return self._page(q, limit, volume_view)

    def get_volume(self, volume_id: str) -> Volume:
        with self.store.tx() as s:
            return volume_view(self._volume(s, volume_id))

    def create_volume(self, req: VolumeCreate, idempotency_key: str | None = None) -> Job:
        if (existing := self._job_for_key(idempotency_key, "volume.create", req)) is not None:
            return existing
        self._require(req.location, Feature.volumes)
        vol_id = new_id("vol")

        def rows(s: Any) -> None:
            s.add(VolumeRow(id=vol_id, name=req.name, location=req.location, size_gb=req.size_gb,
                            state="creating", tags=req.tags))
        return self.submit("volume.create", vol_id, req.location,
                           {"name": req.name, "size_gb": req.size_gb}, idempotency_key, rows,
                           f"create volume {req.name} ({vol_id}, {req.size_gb} GB)", req)

    def attach_volume(self, volume_id: str, req: VolumeAttach) -> Job:
        vol = self.get_volume(volume_id)
        inst = self.get_instance(req.instance)
        if inst.location != vol.location:
            raise InvalidInput(f"volume {volume_id} is at {vol.location}, instance {req.instance} "
                               f"at {inst.location}", field="instance")
        if vol.attached_to:
            raise Conflict(f"volume {volume_id} is attached to {vol.attached_to}", field="volume")
        if not vol.provider_id or not inst.provider_id:
            raise Conflict("volume or instance is still being created", field="volume")
        return self.submit("volume.attach", volume_id, vol.location,
                            {"instance": inst.id, "instance_pid": inst.provider_id,
                             "device": req.device}, None, None,
                            f"attach volume {volume_id} to {inst.id} as {req.device}")

    def detach_volume(self, volume_id: str) -> Job:
        vol = self.get_volume(volume_id)
        if not vol.attached_to:
            raise Conflict(f"volume {volume_id} is not attached", field="volume")
        return self.submit("volume.detach", volume_id, vol.location, {}, None, None,
                            f"detach volume {volume_id}")

    def delete_volume(self, volume_id: str) -> Job:
        vol = self.get_volume(volume_id)
        if vol.attached_to:
            raise Conflict(f"volume {volume_id} is attached to {vol.attached_to}; detach it first",
                           field="volume")
        return self.submit("volume.delete", volume_id, vol.location, {}, None, None,
                            f"delete volume {volume_id}")

    # ---- networks ------------------------------------------------------------------------

    def list_networks(self, *, location: str | None = None, limit: int = 100,
                      cursor: str | None = None) -> Page[Network]:
        limit = max(1, min(limit, MAX_PAGE))
        q = select(NetworkRow).order_by(NetworkRow.id).limit(limit + 1)
        if location:
            q = q.where(NetworkRow.location == location)
        if cursor:
            q = q.where(NetworkRow.id > decode_cursor(cursor))
        return self._page(q, limit, network_view)

    def get_network(self, network_id: str) -> Network:
        with self.store.tx() as s:
            row = s.get(NetworkRow, network_id)
            if row is None:
                raise NotFound(f"no network {network_id!r}", field="network")
            return network_view(row)

    def create_network(self, req: NetworkCreate, idempotency_key: str | None = None) -> Job:
        if (existing := self._job_for_key(idempotency_key, "network.create", req)) is not None:
            return existing
        self._require(req.location, Feature.networks)
        net_id = new_id("net")

        def rows(s: Any) -> None:
            s.add(NetworkRow(id=net_id, name=req.name, location=req.location, cidr=req.cidr,
                             state="creating"))
        return self.submit("network.create", net_id, req.location,
                           {"name": req.name, "cidr": req.cidr}, idempotency_key, rows,
                           f"create network {req.name} ({req.cidr}) at {req.location}", req)

    def delete_network(self, network_id: str) -> Job:
        net = self.get_network(network_id)
        with self.store.tx() as s:
            users = s.scalar(select(func.count()).select_from(InstanceRow).where(
                InstanceRow.network == network_id)) or 0
        if users:
            raise Conflict(f"network {network_id} has {users} instances; destroy or move them "
                           "first", field="dependency")
        return self.submit("network.delete", network_id, net.location, {}, None, None,
                           f"delete network {net.name} ({network_id})")

    # ---- jobs ----------------------------------------------------------------------------

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
        return self._page(q, limit, job_view)

    # ---- job handlers (run in the location's pool) ---------------------------------------

    def _do_create(self, provider: Provider, job: JobRow) -> Outcome:
        p = job.params
        obs = provider.create_instance(InstanceSpec(onepane_id=job.target or "", name=p["name"],
                                                    image=p["image"], size=p["size"],
                                                    tags=p["tags"], network=p.get("network"),
                                                    user_data=p.get("user_data"),
                                                    disks=p.get("disks") or [],
                                                    nics=p.get("nics") or 1,
                                                    ssh_keys=p.get("ssh_keys") or [],
                                                    security_groups=p.get("groups") or [],
                                                    retry=job.attempts > 1))

        def write(s: Session) -> None:  # with the job's end, in its transaction
            row = s.connection().execute(_CREATED, {
                "b_id": job.target, "provider_id": obs.provider_id, "state": obs.state,
                "addresses": obs.addresses, "ports": obs.ports}).first()
            if row is None:
                raise NotFound(f"no instance {job.target!r}", field="instance")
            self.events.emit("instance.created", f"instance {row.name} ({job.target}) is "
                             f"{obs.state}", location=row.location, subject=job.target,
                             session=s, data={"provider_id": obs.provider_id})
        return Outcome({"provider_id": obs.provider_id, "state": obs.state}, write)

    def _do_action(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        action = job.kind.split(".", 1)[1]
        pid = self._provider_id(job.target or "")
        getattr(provider, f"{action}_instance")(pid)
        state = ENDS_IN.get(action, InstanceState.running)
        with self.events.tx() as s:
            row = self._instance(s, job.target or "")
            row.state = state
            self.events.emit(f"instance.{action}", f"instance {row.name} ({row.id}): {action} done",
                             location=row.location, subject=row.id, session=s)
        return {"state": state}

    def _do_destroy(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        with self.store.tx() as s:
            row = s.get(InstanceRow, job.target)
            pid = row.provider_id if row else None
        if pid:
            provider.destroy_instance(pid)
        with self.events.tx() as s:
            row = s.get(InstanceRow, job.target)
            if row is not None:
                for vol in s.scalars(select(VolumeRow).where(VolumeRow.attached_to == row.id)):
                    # the provider let go of them with the instance; the inventory says so now
                    vol.attached_to, vol.device, vol.state = None, None, "available"
                s.delete(row)
                self.events.emit("instance.destroyed", f"instance {row.name} ({row.id}) destroyed",
                                 location=row.location, subject=row.id, session=s)
        return {}

    def _do_volume_create(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        obs = provider.create_volume(job.params["name"], job.params["size_gb"])
        with self.events.tx() as s:
            row = self._volume(s, job.target or "")
            row.provider_id, row.state = obs.provider_id, obs.state
            self.events.emit("volume.created", f"volume {row.name} ({row.id}) created",
                             location=row.location, subject=row.id, session=s)
        return {"provider_id": obs.provider_id}

    def _do_volume_attach(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        p = job.params
        provider.attach_volume(self._volume_pid(job.target or ""), p["instance_pid"], p["device"])
        with self.events.tx() as s:
            row = self._volume(s, job.target or "")
            row.attached_to, row.device, row.state = p["instance"], p["device"], "in-use"
            self.events.emit("volume.attached", f"volume {row.id} attached to {p['instance']}",
                             location=row.location, subject=row.id, session=s)
        return {}

    def _do_volume_detach(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        provider.detach_volume(self._volume_pid(job.target or ""))
        with self.events.tx() as s:
            row = self._volume(s, job.target or "")
            row.attached_to, row.device, row.state = None, None, "available"
            self.events.emit("volume.detached", f"volume {row.id} detached",
                             location=row.location, subject=row.id, session=s)
        return {}

    def _do_volume_delete(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        provider.delete_volume(self._volume_pid(job.target or ""))
        with self.events.tx() as s:
            row = s.get(VolumeRow, job.target)
            if row is not None:
                s.delete(row)
                self.events.emit("volume.deleted", f"volume {row.id} deleted",
                                 location=row.location, subject=row.id, session=s)
        return {}

    def _do_network_create(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        obs = provider.create_network(job.params["name"], job.params["cidr"])
        with self.events.tx() as s:
            row = s.get(NetworkRow, job.target)
            assert row is not None
            row.provider_id, row.state, row.cidr = obs.provider_id, obs.state, obs.cidr
            self.events.emit("network.created", f"network {row.name} ({row.cidr}) created",
                             location=row.location, subject=row.id, session=s)
        return {"provider_id": obs.provider_id}

    def _do_network_delete(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        with self.store.tx() as s:
            row = s.get(NetworkRow, job.target)
            pid = row.provider_id if row else None
        if pid:
            provider.delete_network(pid)
        with self.events.tx() as s:
            row = s.get(NetworkRow, job.target)
            if row is not None:
                s.delete(row)
                self.events.emit("network.deleted", f"network {row.name} ({row.id}) deleted",
                                 location=row.location, subject=row.id, session=s)
        return {}

    def _on_failure(self, job: JobRow, exc: OnepaneError) -> None:
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

    # ---- internals -----------------------------------------------------------------------

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
            if (existing := self._job_for_key(idempotency_key)) is not None:
                return existing
            raise
        view = job_view(job)  # as committed: no second read of what was just written
        self.runner.submit(job_id, location, chain_key(kind, target, location))
        return view

    def moving(self) -> set[str]:
        """Instances a live move is carrying right now (one indexed query)."""
        with self.store.tx() as s:
            return set(s.scalars(select(JobRow.target).where(
                JobRow.kind == LIVE_MOVE, JobRow.status.in_(UNFINISHED))))

    def _provider_network(self, req: InstanceCreate) -> str | None:
        """A onepane network id (net-...) becomes the provider's own id; others pass through."""
        if not req.network or not req.network.startswith("net-"):
            return req.network
        with self.store.tx() as s:
            net = s.get(NetworkRow, req.network)
            if net is None or net.location != req.location:
                raise InvalidInput(f"no network {req.network!r} at {req.location}", field="network")
            if net.provider_id is None:
                raise Conflict(f"network {req.network} is still being created", field="network")
            return net.provider_id

    def _job_for_key(self, key: str | None, kind: str | None = None,
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

    def _page(self, q: Select[Any], limit: int, view: Any, columns: bool = False) -> Page[Any]:
        with self.store.tx() as s:
            rows = list(s.execute(q).mappings()) if columns else list(s.scalars(q))
        items = [view(r) for r in rows[:limit]]
        nxt = encode_cursor(items[-1].id) if len(rows) > limit else None
        return Page[Any](items=items, next_cursor=nxt)

    def _require(self, location: str, feature: Feature) -> Provider:
        provider = self.locations.provider(location)
        provider.require(feature)
        return provider

    def _instance(self, s: Session, instance_id: str) -> InstanceRow:
        row = s.get(InstanceRow, instance_id)
        if row is None:
            raise NotFound(f"no instance {instance_id!r}", field="instance")
        return row

    def _volume(self, s: Session, volume_id: str) -> VolumeRow:
        row = s.get(VolumeRow, volume_id)
        if row is None:
            raise NotFound(f"no volume {volume_id!r}", field="volume")
        return row

    def console(self, instance_id: str, max_bytes: int = 65536) -> dict[str, Any]:
        inst = self.get_instance(instance_id)
        provider = self.locations.provider(inst.location)
        provider.require(Feature.console, "instance")
        pid = self._provider_id(instance_id)
        output = self.locations.registry.run(
            inst.location, lambda p: p.console_output(pid, max_bytes), timeout=30)
        return {"instance": instance_id, "location": inst.location, "output": output}

    def _provider_id(self, instance_id: str) -> str:
        inst = self.get_instance(instance_id)
        if not inst.provider_id:
            raise Conflict(f"instance {instance_id} has no provider id yet")
        return inst.provider_id

    def _volume_pid(self, volume_id: str) -> str:
        vol = self.get_volume(volume_id)
        if not vol.provider_id:
            raise Conflict(f"volume {volume_id} has no provider id yet")
        return vol.provider_id
