"""Instances: listed and changed the same way at every location. A request is validated first
(bad input is a 4xx that leaves nothing behind), then recorded with its job (jobqueue.py),
then carried out by the runner through the handlers below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound
from ..events import EventLog
from ..model import Instance, InstanceCreate, InstanceState, Job, Page, new_id
from ..providers.base import Feature, InstanceSpec, Provider
from ..store.tables import InstanceRow, InstanceTagRow, JobRow, LocationRow, NetworkRow, VolumeRow
from ..store.tags import tag_rows
from .firewall import leave_groups
from .jobqueue import Jobs, ResourceService
from .jobs import Outcome
from .locations import Locations
from .paging import MAX_PAGE, decode_sort_cursor, encode_sort_cursor, page
from .rows import instance_row, volume_row
from .validation import Validation
from .views import instance_view, instance_view_from_columns

ACTIONS = {"start": Feature.stop_start, "stop": Feature.stop_start, "reboot": Feature.reboot,
           "suspend": Feature.suspend, "resume": Feature.suspend}
ENDS_IN = {"stop": InstanceState.stopped, "suspend": InstanceState.suspended}
_INSTANCES = cast(Table, InstanceRow.__table__)
# A create's statements, built once: each create binds its values (building and hashing a
# statement per create cost more than executing it; bench/provision.py)
_NEW_INSTANCE = insert(_INSTANCES)
_NEW_TAGS = insert(cast(Table, InstanceTagRow.__table__))
_CREATED = (update(_INSTANCES).where(_INSTANCES.c.id == bindparam("b_id"))
            .returning(_INSTANCES.c.name, _INSTANCES.c.location))
SORTABLE = {"created": InstanceRow.id, "name": InstanceRow.name, "state": InstanceRow.state,
            "location": InstanceRow.location, "image": InstanceRow.image,
            "size": InstanceRow.size}
SORT_FIELD = {"id": "id", "name": "name", "state": "state", "location": "location",
              "image": "image", "size": "size"}


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


class Instances(ResourceService):
    def __init__(self, events: EventLog, locations: Locations, jobs: Jobs) -> None:
        super().__init__(events, locations, jobs)
        self.validation = Validation(locations)
        # Set by the core to the image catalog's: what a location boots for a catalog image.
        self.boot_image: Callable[[str, str, str | None, dict[str, str]], Any] | None = None

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
        found = page(self.store, q, limit, instance_view_from_columns, columns=True)
        if found.next_cursor and found.items:
            tail = found.items[-1]
            found.next_cursor = encode_sort_cursor(
                getattr(tail, SORT_FIELD[column.key]) if column is not InstanceRow.id else tail.id,
                tail.id)
        return found

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
            row = instance_row(s, instance_id)
            loc = s.get(LocationRow, row.location)
            return instance_view(row, loc.provider if loc else None)

    def create_instance(self, req: InstanceCreate, idempotency_key: str | None = None) -> Job:
        if (existing := self.jobs.job_for_key(idempotency_key, "instance.create", req)) is not None:
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
        self.validation.check(req.location, image, size)
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
        return self.jobs.submit("instance.create", inst_id, req.location, params, idempotency_key, rows,
                           f"create instance {req.name} ({inst_id}) at {req.location}", req)

    def instance_action(self, instance_id: str, action: str,
                        idempotency_key: str | None = None) -> Job:
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; use {', '.join(ACTIONS)}",
                               field="action")
        if (existing := self.jobs.job_for_key(idempotency_key, f"instance.{action}",
                                          instance_id)) is not None:
            return existing
        inst = self.get_instance(instance_id)
        provider = self.locations.provider(inst.location)
        provider.require(ACTIONS[action], "action")
        if inst.state in (InstanceState.pending, InstanceState.missing):
            raise Conflict(f"instance {instance_id} is {inst.state}; cannot {action} it",
                           field="state")
        return self.jobs.submit(f"instance.{action}", instance_id, inst.location, {}, idempotency_key,
                           None, f"{action} instance {inst.name} ({instance_id})", instance_id)

    def resize_instance(self, instance_id: str, size: str) -> Job:
        """A stopped instance takes another of its location's sizes (at its next start)."""
        inst = self.get_instance(instance_id)
        provider = self.locations.provider(inst.location)
        provider.require(Feature.resize, "size")
        if inst.state != InstanceState.stopped:
            raise Conflict(f"instance {instance_id} is {inst.state}; stop it to resize it",
                           field="state")
        image = inst.image  # a catalog image is asked for by the name its location has for it
        if self.boot_image is not None and image.startswith("img-"):
            image = self.boot_image(image, inst.location, None, {}).provider_image_id
        self.validation.check(inst.location, image, size)
        return self.jobs.submit("instance.resize", instance_id, inst.location, {"size": size}, None,
                           None, f"resize instance {inst.name} ({instance_id}) to {size}")

    def _do_resize(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        provider.resize_instance(self._provider_id(job.target or ""), job.params["size"])
        with self.events.tx() as s:
            row = instance_row(s, job.target or "")
            row.size = job.params["size"]
            self.events.emit("instance.resized", f"instance {row.name} ({row.id}) is now "
                             f"{row.size}", location=row.location, subject=row.id, session=s)
        return {"size": job.params["size"]}

    def destroy_instance(self, instance_id: str, idempotency_key: str | None = None,
                         forget_data: str | None = None) -> Job:
        """`forget_data`: a deleted deployment's name — the data disks its replicas kept
        at the location (storage policy `keep`) are dropped once this one is destroyed."""
        if (existing := self.jobs.job_for_key(idempotency_key, "instance.destroy",
                                          instance_id)) is not None:
            return existing
        inst = self.get_instance(instance_id)
        params = {"forget_data": forget_data} if forget_data else {}
        return self.jobs.submit("instance.destroy", instance_id, inst.location, params,
                                idempotency_key, None,
                                f"destroy instance {inst.name} ({instance_id})", instance_id)

    def retag(self, resource_id: str, add: dict[str, str], remove: dict[str, str | None]) -> None:
        """Set and remove onepane tags on an instance or volume (not pushed to the provider).

        `remove` maps a key to the value it must have to be removed, or None for any value.
        """
        with self.events.tx() as s:
            row: InstanceRow | VolumeRow
            if resource_id.startswith("vol-"):
                row = volume_row(s, resource_id)
            else:
                row = instance_row(s, resource_id)
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
            row = instance_row(s, instance_id)
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

    def console(self, instance_id: str, max_bytes: int = 65536) -> dict[str, Any]:
        inst = self.get_instance(instance_id)
        provider = self.locations.provider(inst.location)
        provider.require(Feature.console, "instance")
        pid = self._provider_id(instance_id)
        output = self.locations.registry.run(
            inst.location, lambda p: p.console_output(pid, max_bytes), timeout=30)
        return {"instance": instance_id, "location": inst.location, "output": output}

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
            row = instance_row(s, job.target or "")
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
        if (deployment := job.params.get("forget_data")) and \
                provider.capabilities.supports(Feature.keep_data):
            # each destroy of the deleted deployment's replicas forgets after its own keep,
            # so once the last has run nothing of its data is left, whatever their order
            dropped = provider.forget_data(deployment)
            if dropped:
                self.events.emit("data.forgotten", f"data disks kept for {deployment} at "
                                 f"{provider.location} dropped: {', '.join(dropped)}",
                                 location=provider.location, subject=deployment)
        with self.events.tx() as s:
            row = s.get(InstanceRow, job.target)
            if row is not None:
                for vol in s.scalars(select(VolumeRow).where(VolumeRow.attached_to == row.id)):
                    # the provider let go of them with the instance; the inventory says so now
                    vol.attached_to, vol.device, vol.state = None, None, "available"
                leave_groups(s, row.id)  # ... and its groups
                s.delete(row)
                self.events.emit("instance.destroyed", f"instance {row.name} ({row.id}) destroyed",
                                 location=row.location, subject=row.id, session=s)
        return {}

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

    def _provider_id(self, instance_id: str) -> str:
        inst = self.get_instance(instance_id)
        if not inst.provider_id:
            raise Conflict(f"instance {instance_id} has no provider id yet")
        return inst.provider_id
