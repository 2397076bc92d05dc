"""One function per EC2 action, each a translation onto onepane's own services.

Nothing here decides anything the native API would decide differently: validation, jobs,
idempotency and roles are the services' (DESIGN.md, Interfaces).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ...core import Core
from ...errors import IdempotencyMismatch, NotFound, OnepaneError
from ...inventory.paging import every
from ...model import (
    Instance,
    InstanceCreate,
    InstanceState,
    Job,
    JobStatus,
    Volume,
    VolumeAttach,
    VolumeCreate,
    slug,
)
from ...providers.base import Feature
from ..waits import ENDED
from . import launch_volumes, shapes
from .filtering import FilterTable, Getter, each, key, tag_set
from .root_volumes import (
    DISK_ROOT,
    all_roots,
    disk_gb,
    find_root,
    image_snapshot_id,
    is_root,
    refuse_root,
    root_kinds,
    root_snapshot,
    root_volumes,
    volume_locations,
)
from .settle import settle
from .wire import Ec2Error, integer, members, required

TERMINATED_FOR = timedelta(hours=1)
READ_ONLY = "viewer"
WRITE = "operator"


@dataclass
class Context:
    core: Core
    key_id: str
    region: str
    endpoint: str


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]
ACTIONS: dict[str, tuple[str, Handler]] = {}


def action(role: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ACTIONS[fn.__name__.removeprefix("do_")] = (role, fn)
        return fn
    return register


# ---- regions and zones ------------------------------------------------------------------------

@action(READ_ONLY)
def DescribeRegions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    names = members(p, "RegionName")
    if names and ctx.region not in names:
        raise Ec2Error("InvalidParameterValue", f"unknown region {names[0]!r}; onepane serves "
                       f"one region, {ctx.region!r}, whose zones are its locations")
    return {"regionInfo": [{"regionName": ctx.region, "regionEndpoint": ctx.endpoint,
                            "optInStatus": "opt-in-not-required"}]}


@action(READ_ONLY)
def DescribeAvailabilityZones(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    zones = [shapes.zone(loc, ctx.region) for loc in ctx.core.locations.list()]
    wanted = set(members(p, "ZoneName"))
    if unknown := wanted - {z["zoneName"] for z in zones}:
        raise Ec2Error("InvalidParameterValue", f"unknown availability zone {sorted(unknown)[0]!r}")
    flt = ZONE_FILTERS.parse(p)
    return {"availabilityZoneInfo": ZONE_FILTERS.apply(
        flt, [z for z in zones if not wanted or z["zoneName"] in wanted])}


ZONE_FILTERS = FilterTable({"zone-name": key("zoneName"), "state": key("zoneState"),
                            "region-name": key("regionName")})


# ---- instances --------------------------------------------------------------------------------

def _net_hex(inst: Instance) -> str | None:
    return inst.network.split("-", 1)[1] if inst.network else None


def _groups(pair: tuple[Instance, shapes.Extras]) -> list[tuple[str, str]]:
    return pair[1].groups.get(pair[0].id, [])


# filters read (instance, extras): what the answer shows of an instance is in both
INSTANCE_FILTERS = FilterTable({
    "instance-id": lambda ie: shapes.instance_id(ie[0].id),
    "instance-state-name": lambda ie: shapes.state_of(ie[0])["name"],
    "availability-zone": lambda ie: ie[0].location,
    "instance-type": lambda ie: ie[0].size,
    "image-id": lambda ie: ie[0].image,
    "private-ip-address": lambda ie: shapes.split_addresses(ie[0].addresses)[0] or "",
    "private-dns-name": lambda ie: shapes.private_dns(shapes.split_addresses(ie[0].addresses)[0]),
    "ip-address": lambda ie: shapes.split_addresses(ie[0].addresses)[1] or "",
    "key-name": lambda ie: ie[1].key_names.get(ie[0].id, ""),
    "reservation-id": lambda ie: ie[1].reservations.get(
        ie[0].id, ("r-" + ie[0].id.split("-", 1)[1], 0))[0],
    "subnet-id": lambda ie: f"subnet-{h}" if (h := _net_hex(ie[0])) else "",
    "vpc-id": lambda ie: ie[1].vpcs.get(ie[0].network, f"vpc-{h}") if (h := _net_hex(ie[0]))
    else "",
    "instance.group-id": lambda ie: [g for g, _ in _groups(ie)],
    "group-id": lambda ie: [g for g, _ in _groups(ie)],
    "instance.group-name": lambda ie: [n for _, n in _groups(ie)],
    "group-name": lambda ie: [n for _, n in _groups(ie)]},
    tags=lambda ie: ie[0].tags)


def extras(ctx: Context) -> shapes.Extras:
    """Groups, key names and attached volumes of every instance: three lookups for a listing,
    not three per instance."""
    out = shapes.Extras()
    for g in ctx.core.security_groups.find():
        for m in g.members:
            out.groups.setdefault(m, []).append((g.id, g.name))
    notes = ctx.core.annotations.all()
    out.key_names = {k: str(n.attributes["ec2.keyName"]) for k, n in notes.items()
                     if "ec2.keyName" in n.attributes}
    out.vpcs = {k: str(n.attributes["ec2.vpc"]) for k, n in notes.items()
                if "ec2.vpc" in n.attributes}
    out.doomed = deleted_with_instance(notes)
    out.source_dest = {k: bool(n.attributes["ec2.sourceDestCheck"]) for k, n in notes.items()
                       if "ec2.sourceDestCheck" in n.attributes}
    out.reservations = {k: (str(n.attributes["ec2.reservation"]),
                            int(n.attributes.get("ec2.launchIndex", 0)))
                        for k, n in notes.items() if "ec2.reservation" in n.attributes}
    for v in every(ctx.core.ops.volumes.list_volumes):
        if v.attached_to:
            out.volumes.setdefault(v.attached_to, []).append(v)
    from .interfaces import attached
    out.interfaces = attached(ctx)
    out.root_kinds = root_kinds(ctx)
    return out


def deleted_with_instance(notes: dict[str, Any]) -> set[str]:
    """The volumes marked DeleteOnTermination (`notes`: every annotation, by resource)."""
    return {k for k, n in notes.items() if n.attributes.get("ec2.deleteOnTermination")}


def with_roots(ctx: Context, ex: shapes.Extras, insts: list[Instance]) -> shapes.Extras:
    """`ex` with the root volumes of `insts` (the instances an answer shows)."""
    ex.roots = root_volumes(ctx, insts)
    return ex


def reservations(insts: list[Instance], ex: shapes.Extras) -> list[dict[str, Any]]:
    """Instances grouped as they were launched: one RunInstances is one reservation."""
    groups: dict[str, list[tuple[int, Instance]]] = {}
    for inst in insts:
        rid, index = ex.reservations.get(inst.id, ("r-" + inst.id.split("-", 1)[1], 0))
        groups.setdefault(rid, []).append((index, inst))
    out = []
    for rid, members_ in groups.items():
        ordered = [i for _, i in sorted(members_, key=lambda x: x[0])]
        body = shapes.reservation(ordered, ex, rid)
        for item, (index, _) in zip(body["instancesSet"], sorted(members_, key=lambda x: x[0]),
                                    strict=True):
            item["amiLaunchIndex"] = index
        out.append(body)
    return out


@action(READ_ONLY)
def DescribeInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = INSTANCE_FILTERS.parse(p)
    ids = members(p, "InstanceId")
    max_results = integer(p, "MaxResults", None, low=5, high=1000)
    if ids and max_results is not None:
        raise Ec2Error("InvalidParameterCombination",
                       "MaxResults cannot be used together with InstanceId")
    ops = ctx.core.ops
    ex = extras(ctx)
    if ids:
        found = [i for i in (_instance_or_terminated(ctx, i) for i in ids) if _keep(flt, i, ex)]
        return {"reservationSet": reservations(found, with_roots(ctx, ex, found))}
    # Push what SQL can do (one zone, single-valued tags) into the query; filter the rest here.
    zones = flt.get("availability-zone", [])
    tags = {k[4:]: v[0] for k, v in flt.items() if k.startswith("tag:") and len(v) == 1
            and not set(v[0]) & set("*?")}  # a wildcard is matched here, not in SQL
    one_zone = zones[0] if len(zones) == 1 and not set(zones[0]) & set("*?") else None
    kw: dict[str, Any] = {"location": one_zone, "tags": tags or None}
    out: list[Instance] = []
    cursor = p.get("NextToken") or None
    want = max_results or 1_000_000
    while len(out) < want:
        page = ops.instances.list_instances(limit=min(1000, want - len(out)), cursor=cursor, **kw)
        out.extend(i for i in page.items if _keep(flt, i, ex))
        cursor = page.next_cursor
        if not cursor:
            break
    return {"reservationSet": reservations(out, with_roots(ctx, ex, out)),
            "nextToken": cursor if max_results else None}


def _keep(flt: dict[str, list[str]], inst: Instance, ex: shapes.Extras) -> bool:
    return INSTANCE_FILTERS.keep(flt, (inst, ex))


@action(WRITE)
def RunInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image = required(p, "ImageId")
    size = p.get("InstanceType") or "t2.micro"
    count = _launch_count(p)
    from .interfaces import check_launch
    check_launch(ctx, p)
    p = _with_primary_interface(p)
    _refuse_unhonoured(p)
    zone, network = _where(ctx, p)
    launched = launch_volumes.parse(ctx, p, image, zone)
    tags = _tag_specs(p, "instance", made_none=("volume",))
    volume_tags = _tag_specs(p, "volume", made_none=("instance",))  # the launched volumes
    token = p.get("ClientToken")
    if token and len(token) > 64:
        raise Ec2Error("InvalidParameterValue", "ClientToken must be at most 64 characters")
    key_name = p.get("KeyName")
    groups = _groups_for(ctx, p, network)
    cloud_groups = [g.id for g in groups] if ctx.core.locations.provider(zone).capabilities \
        .supports(Feature.firewall) and ctx.core.locations.get(zone).provider == "cloud" else []
    base = slug(tags.get("Name")) or "ec2"
    template = InstanceCreate(
        name=base, location=zone, image=image, size=size, tags=tags, network=network,
        user_data=_user_data(p), security_groups=cloud_groups,
        ssh_keys=[ctx.core.key_pairs.get(key_name).public_key] if key_name else [])
    insts: list[Instance] = []
    jobs: list[str] = []
    for n in range(count):
        name = base if count == 1 else f"{base[:58]}-{n}"
        inst, job_id = _launch(ctx, template.model_copy(update={"name": name}), token, n, count,
                               insts[0].id if insts else None)
        insts.append(inst)
        jobs.append(job_id)
    rid = "r-" + insts[0].id.split("-", 1)[1]
    protect = str(p.get("DisableApiTermination", "false")).lower() == "true"
    for n, inst in enumerate(insts):
        set_ec2_notes(ctx, inst.id, reservation=rid, launchIndex=n, count=count,
                      keyName=key_name, userData=p.get("UserData"),
                      disableApiTermination=protect)
        ctx.core.security_groups.join(inst.id, [g.id for g in groups], inst.location)
    settle(ctx.core, jobs)  # usually running by now: a client's waiter need not wait 15 s
    if launched:
        _with_volumes(ctx, insts, jobs, launched, volume_tags)
    insts = [ctx.core.ops.instances.get_instance(i.id) for i in insts]
    body = reservations(insts, with_roots(ctx, extras(ctx), insts))[0]
    for item in body["instancesSet"]:
        item["clientToken"] = token
    return body


def _with_volumes(ctx: Context, insts: list[Instance], jobs: list[str],
                  launched: list[launch_volumes.Launched], tags: dict[str, str]) -> None:
    """The launch's volumes made and attached once each instance exists; if any fails, the
    launch is undone: its instances destroyed (their volumes with them) and the error said."""
    try:
        for inst, job_id in zip(insts, jobs, strict=True):
            launch_volumes.wait_made(ctx, job_id, inst.id)
            launch_volumes.attach_all(ctx, inst, launched, tags)
    except Exception:
        undo = [ctx.core.ops.instances.destroy_instance(i.id).id for i in insts]
        for inst, job_id in zip(insts, undo, strict=True):
            _delete_volumes_after(ctx, inst.id, job_id)
        raise


def _launch_count(p: dict[str, Any]) -> int:
    """How many to launch: MaxCount (onepane starts them all or fails), checked against
    MinCount."""
    low = integer(p, "MinCount", low=1, high=100)
    high = integer(p, "MaxCount", low=1, high=100)
    if low is None or high is None:
        raise Ec2Error("MissingParameter", "the request must contain MinCount and MaxCount")
    if low > high:
        raise Ec2Error("InvalidParameterValue", "MinCount must not be larger than MaxCount")
    return high


def _refuse_unhonoured(p: dict[str, Any]) -> None:
    for unhonoured in ("KernelId", "RamdiskId", "Ipv6Address",
                       "PrivateIpAddress", "NetworkInterface",
                       "ElasticGpuSpecification", "CpuOptions", "HibernationOptions"):
        if members(p, unhonoured) if isinstance(p.get(unhonoured), list) else p.get(unhonoured):
            raise Ec2Error("UnsupportedOperation", f"{unhonoured}: onepane cannot honour it "
                           "(instances get their location's disks, kernel and network)")


def _where(ctx: Context, p: dict[str, Any]) -> tuple[str, str | None]:
    """The location (the subnet's, else the placement's zone, else the default) and the
    onepane network of the subnet, if one was given."""
    network = shapes.to_onepane(p["SubnetId"], "subnet") if p.get("SubnetId") else None
    placed = (p.get("Placement") or {}).get("AvailabilityZone")
    zone = placed or ctx.core.locations.default()
    if network:
        net = ctx.core.ops.networks.get_network(network)
        if placed and placed != net.location:
            raise Ec2Error("InvalidParameterValue", f"subnet {p['SubnetId']} is in "
                           f"{net.location}, not {placed}")
        zone = net.location  # the subnet says where the instance goes
    return zone, network


def _launch(ctx: Context, req: InstanceCreate, token: str | None, n: int, count: int,
            first_id: str | None) -> tuple[Instance, str]:
    """One instance of the launch; with a ClientToken, the one an earlier attempt made if it
    asked for the same (IdempotentParameterMismatch if not)."""
    key = f"ec2:{ctx.key_id}:{token}:{n}" if token else None
    mismatch = Ec2Error("IdempotentParameterMismatch", f"ClientToken {token!r} was used before "
                        "with other parameters")
    try:
        job = ctx.core.ops.instances.create_instance(req, key)
    except IdempotencyMismatch as exc:
        raise mismatch from exc
    inst = ctx.core.ops.instances.get_instance(job.target or "")
    first = ctx.core.annotations.get(first_id or inst.id).attributes
    if (inst.image, inst.size, inst.location) != (req.image, req.size, req.location) or \
            (token and first.get("ec2.count") not in (None, count)):
        raise mismatch
    return inst, job.id


# What a launch's primary interface may say: what onepane does anyway (a subnet, groups, the
# address the location gives, gone with the instance). Ansible's ec2_instance always sends one.
PRIMARY_INTERFACE_KEYS = {"DeviceIndex", "SubnetId", "SecurityGroupId", "Description",
                          "AssociatePublicIpAddress", "DeleteOnTermination"}


def _with_primary_interface(p: dict[str, Any]) -> dict[str, Any]:
    """RunInstances' `NetworkInterface.1` (device 0, a subnet, groups) as the plain SubnetId and
    SecurityGroupId it amounts to; anything onepane cannot honour is refused by name (another
    interface, an existing ENI, fixed or extra addresses, keeping it after termination)."""
    nics = members(p, "NetworkInterface")
    if not nics:
        return p
    if len(nics) > 1:
        raise Ec2Error("UnsupportedOperation", "NetworkInterface.2: onepane gives an instance "
                       "one interface")
    nic = nics[0]
    extra = sorted(set(nic) - PRIMARY_INTERFACE_KEYS)
    if extra:
        raise Ec2Error("UnsupportedOperation", f"NetworkInterface.1.{extra[0]}: onepane cannot "
                       "honour it (an instance gets one interface in its subnet, with the "
                       "address its location gives)")
    if str(nic.get("DeviceIndex", "0")) != "0":
        raise Ec2Error("InvalidParameterValue", "NetworkInterface.1.DeviceIndex must be 0")
    if str(nic.get("DeleteOnTermination", "true")).lower() != "true":
        raise Ec2Error("UnsupportedOperation", "NetworkInterface.1.DeleteOnTermination=false: "
                       "an instance's interface goes with it")
    if (nic.get("SubnetId") and p.get("SubnetId")) or \
            (nic.get("SecurityGroupId") and (p.get("SecurityGroupId") or p.get("SecurityGroup"))):
        raise Ec2Error("InvalidParameterCombination", "give the subnet and groups either in "
                       "NetworkInterface.1 or at the top level, not both")
    out = {k: v for k, v in p.items() if k != "NetworkInterface"}
    if nic.get("SubnetId"):
        out["SubnetId"] = nic["SubnetId"]
    if nic.get("SecurityGroupId"):
        out["SecurityGroupId"] = members(nic, "SecurityGroupId")
    return out


def tags_at_create(ctx: Context, p: dict[str, Any], resource_type: str, kind: str,
                   rid: str, tags: dict[str, str] | None = None) -> None:
    """TagSpecification on a Create call: the tags land with the resource (Ansible finds its
    VPC by its Name tag on the next run; without them it made a second one). Call
    _tag_specs(p, …) before creating anything so that a bad tag creates nothing."""
    tags = _tag_specs(p, resource_type) if tags is None else tags
    if tags:
        _retag(ctx, kind, rid, tags, {})


def set_ec2_notes(ctx: Context, resource: str, **values: Any) -> None:
    note = ctx.core.annotations.get(resource)
    attrs = {**note.attributes, **{f"ec2.{k}": v for k, v in values.items() if v is not None}}
    ctx.core.annotations.put(resource, attrs, note.categories)


def _groups_for(ctx: Context, p: dict[str, Any], network: str | None) -> list[Any]:
    sg = ctx.core.security_groups
    if network:  # a subnet's groups are its VPC's
        vpc = ctx.core.annotations.get(network).attributes.get("ec2.vpc")
        network = str(vpc) if vpc else "vpc-" + network.split("-", 1)[1]
    ids = [g for g in members(p, "SecurityGroupId")]
    names = members(p, "SecurityGroup")
    found = [sg.get(g) for g in ids] + [sg.by_name(n, network) for n in names]
    return found or [sg.default(network)]


def _user_data(p: dict[str, Any]) -> str | None:
    raw = p.get("UserData")
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise Ec2Error("InvalidParameterValue", "UserData must be base64 (of UTF-8 text)") from exc


@action(WRITE)
def StartInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"instancesSet": _act(ctx, p, "start", shapes.PENDING)}


@action(WRITE)
def StopInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"instancesSet": _act(ctx, p, "stop", shapes.STOPPING)}


@action(WRITE)
def RebootInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    _act(ctx, p, "reboot", None)
    return {"return": True}


@action(WRITE)
def TerminateInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"instancesSet": _act(ctx, p, "destroy", shapes.SHUTTING_DOWN)}


def _act(ctx: Context, p: dict[str, Any], verb: str,
         current: dict[str, Any] | None) -> list[dict[str, Any]]:
    """AWS's element order: instanceId, currentState, previousState (clients read it so)."""
    ids = members(p, "InstanceId")
    if not ids:
        raise Ec2Error("MissingParameter", "the request must contain the parameter InstanceId")
    found = [_instance_or_terminated(ctx, i) if verb == "destroy" else _instance(ctx, i)
             for i in ids]  # every id checked before anything is done
    if verb == "destroy":
        for inst in found:
            if ctx.core.annotations.get(inst.id).attributes.get("ec2.disableApiTermination"):
                raise Ec2Error("OperationNotPermitted", f"the instance "
                               f"{shapes.instance_id(inst.id)} may not be terminated: change "
                               "its disableApiTermination attribute first")
    out = []
    jobs = []
    for inst in found:
        before = shapes.state_of(inst)
        now = current
        if verb == "destroy" and inst.state == InstanceState.missing:
            now = before  # terminating what is terminated succeeds and changes nothing
        elif verb == "destroy":
            jobs.append(ctx.core.ops.instances.destroy_instance(inst.id).id)
            _delete_volumes_after(ctx, inst.id, jobs[-1])
            ctx.core.security_groups.leave_all(inst.id)
            from .interfaces import released_with
            released_with(ctx, shapes.instance_id(inst.id))
            ctx.core.addresses.forget_instance(inst.id)  # EC2: terminating disassociates
        else:
            ctx.core.ops.instances.instance_action(inst.id, verb)
        out.append({"instanceId": shapes.instance_id(inst.id), "currentState": now,
                    "previousState": before})
    settle(ctx.core, jobs)  # the answer still says shutting-down; the first look, terminated
    return out


def _delete_volumes_after(ctx: Context, instance_id: str, destroy_job: str) -> None:
    """The instance's volumes marked DeleteOnTermination (ModifyInstanceAttribute) are deleted
    once its destroy has let go of them. Followed in this process: if onepane stops before
    the destroy ends, the volumes stay (available, as after any detach)."""
    notes = ctx.core.annotations.all()
    doomed = [v.id for v in every(ctx.core.ops.volumes.list_volumes)
              if v.attached_to == instance_id and v.id in notes
              and notes[v.id].attributes.get("ec2.deleteOnTermination")]
    if not doomed:
        return
    core, once = ctx.core, threading.Lock()

    def ended(job: Job) -> None:  # in the job runner's thread, after the job's commit
        if job.id != destroy_job or not once.acquire(blocking=False):
            return
        stop()
        if job.status == JobStatus.succeeded:
            for volume_id in doomed:
                with contextlib.suppress(OnepaneError):  # deleted meanwhile by someone else
                    core.ops.volumes.delete_volume(volume_id)
    stop = core.runner.watch(ended)
    if core.ops.jobs.get_job(destroy_job).status in ENDED:
        ended(core.ops.jobs.get_job(destroy_job))


def _instance(ctx: Context, ec2_id: str) -> Instance:
    try:
        return ctx.core.ops.instances.get_instance(shapes.to_onepane(ec2_id, "instance"))
    except NotFound as exc:  # named as the caller named it
        raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{ec2_id}' does not "
                       "exist") from exc


def _instance_or_terminated(ctx: Context, ec2_id: str) -> Instance:
    """Like EC2, an instance asked for by id reads `terminated` for an hour after it is gone
    (what waiters such as `aws ec2 wait instance-terminated` look for). The record is the event
    log's: onepane keeps no tombstone rows."""
    try:
        return _instance(ctx, ec2_id)
    except Ec2Error:
        native = shapes.to_onepane(ec2_id, "instance")
        gone = ctx.core.events.list(kind="instance.destroyed", subject=native, limit=1).items
        if not gone:
            raise
        ev = gone[0]
        if datetime.now(UTC) - ev.ts.replace(tzinfo=ev.ts.tzinfo or UTC) > TERMINATED_FOR:
            raise
        return Instance(id=native, name=native, location=ev.location or "", provider_id=None,
                        image="", size="", state=InstanceState.missing, addresses=[], ports={},
                        tags={}, origin="onepane", created_at=ev.ts, updated_at=ev.ts)


# ---- images -----------------------------------------------------------------------------------

@action(READ_ONLY)
def DescribeImages(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = IMAGE_FILTERS.parse(p)
    ids = members(p, "ImageId")
    notes = ctx.core.annotations.all()
    images = ctx.core.ops.images.list_images(flt.get("availability-zone"), limit=100_000)
    one: dict[str, Any] = {}
    for i in images:  # an image present in several zones is one entry
        one.setdefault(i.id, i)
    if missing := set(ids) - set(one) - {c.id for c in ctx.core.catalog.all()}:
        raise Ec2Error("InvalidAMIID.NotFound", f"the image id '[{sorted(missing)[0]}]' does "
                       "not exist")
    def tags(image_id: str) -> dict[str, str]:
        return dict(notes[image_id].attributes.get("ec2.tags") or {}) if image_id in notes \
            else {}
    # each image with the zones it is in (the answer does not show them; the filter reads them)
    from .image_attributes import shown

    def note(image_id: str) -> dict[str, Any]:
        return notes[image_id].attributes if image_id in notes else {}
    kinds, disks = root_kinds(ctx), volume_locations(ctx)
    items = [(shown(note(c.id), shapes.catalog_image(c, tags(c.id), (
        DISK_ROOT, image_snapshot_id(c.id), disk_gb(c)))), [r.location for r in c.replicas])
             for c in ctx.core.catalog.all() if not ids or c.id in ids]
    items += [(shown(note(i.id), shapes.image(
        i, tags(i.id), kinds.get(i.location, "ebs"),
        DISK_ROOT if i.location in disks else shapes.ROOT_DEVICE)), [i.location])
        for i in one.values() if not ids or i.id in ids]
    return {"imagesSet": [shape for shape, _ in IMAGE_FILTERS.apply(flt, items)]}


def _shown(name: str) -> Getter:
    return lambda item: key(name)(item[0])


IMAGE_FILTERS = FilterTable({
    "image-id": _shown("imageId"), "name": _shown("name"), "state": _shown("imageState"),
    "owner-id": _shown("imageOwnerId"), "architecture": _shown("architecture"),
    "root-device-type": _shown("rootDeviceType"), "image-type": _shown("imageType"),
    "availability-zone": lambda item: item[1]}, tags=lambda item: tag_set(item[0]))


# ---- tags -------------------------------------------------------------------------------------

MAX_TAGS, MAX_KEY, MAX_VALUE = 50, 128, 256


@action(WRITE)
def CreateTags(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    resources = _tag_targets(ctx, p)
    tags = {t.get("Key", ""): t.get("Value", "") for t in members(p, "Tag")}
    if not tags or "" in tags:
        raise Ec2Error("MissingParameter", "the request must contain Tag.N.Key")
    _check_tags(tags)
    for kind, rid in resources:
        current = _tags_of(ctx, kind, rid)
        if len({**current, **tags}) > MAX_TAGS:
            raise Ec2Error("TagLimitExceeded", f"a resource has at most {MAX_TAGS} tags")
    for kind, rid in resources:
        _retag(ctx, kind, rid, tags, {})
    return {"return": True}


@action(WRITE)
def DeleteTags(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Without Tag.N, every tag of the resources goes (as in EC2)."""
    given = members(p, "Tag")
    for t in given:
        if str(t.get("Key", "")).startswith("aws:"):
            raise Ec2Error("InvalidParameterValue", "tags starting with aws: are reserved")
    for kind, rid in _tag_targets(ctx, p):
        remove: dict[str, str | None] = {t.get("Key", ""): t.get("Value") for t in given} \
            if given else dict.fromkeys(_tags_of(ctx, kind, rid))
        _retag(ctx, kind, rid, {}, remove)
    return {"return": True}


def _check_tags(tags: dict[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise Ec2Error("TagLimitExceeded", f"at most {MAX_TAGS} tags per resource")
    for k, v in tags.items():
        if len(k) > MAX_KEY:
            raise Ec2Error("InvalidParameterValue", f"tag key {k[:20]!r}...: at most {MAX_KEY} "
                           "characters")
        if len(v) > MAX_VALUE:
            raise Ec2Error("InvalidParameterValue", f"the value of tag {k!r}: at most "
                           f"{MAX_VALUE} characters")
        if k.startswith("aws:"):
            raise Ec2Error("InvalidParameterValue", f"tag {k!r}: keys starting with aws: are "
                           "reserved")


def _tag_targets(ctx: Context, p: dict[str, Any]) -> list[tuple[str, str]]:
    ids = members(p, "ResourceId")
    if not ids:
        raise Ec2Error("MissingParameter", "the request must contain ResourceId.N")
    out = []
    for rid in ids:
        if rid.startswith("vol-"):
            out.append(("volume", ctx.core.ops.volumes.get_volume(shapes.to_onepane(rid, "volume")).id))
        elif rid.startswith("snap-"):
            out.append(("snapshot", ctx.core.snapshots.get(rid).id))
        elif rid.startswith("i-"):
            out.append(("instance", _instance(ctx, rid).id))
        elif rid.split("-", 1)[0] in OTHER_KINDS:
            if not ec2_exists(ctx, rid):
                raise Ec2Error(f"Invalid{OTHER_KINDS[rid.split('-', 1)[0]]}ID.NotFound",
                               f"the ID '{rid}' does not exist")
            out.append(("other", rid))
        elif any(i.id == rid for i in ctx.core.ops.images.list_images(limit=100_000)):
            out.append(("other", rid))  # an image, by the id its location gives it
        else:
            raise Ec2Error("InvalidID", f"the ID {rid!r} is not valid here")
    return out


# Resources whose tags live in their annotations, keyed by the EC2 id's prefix: the name in
# their error codes and their DescribeTags resource type.
OTHER_KINDS = {"vpc": "Vpc", "subnet": "Subnet", "sg": "Group", "igw": "InternetGateway",
               "rtb": "RouteTable", "dopt": "DhcpOptions", "ami": "AMI", "eni": "NetworkInterface",
               "eipalloc": "Allocation", "cgw": "CustomerGateway"}
RESOURCE_TYPES = {"vpc": "vpc", "subnet": "subnet", "sg": "security-group",
                  "igw": "internet-gateway", "rtb": "route-table", "dopt": "dhcp-options",
                  "ami": "image", "eni": "network-interface", "eipalloc": "elastic-ip",
                  "cgw": "customer-gateway"}


def ec2_exists(ctx: Context, rid: str) -> bool:
    from .vpc import all_vpcs
    kind = rid.split("-", 1)[0]
    if kind == "vpc":
        return rid in {v["vpcId"] for v in all_vpcs(ctx)}
    if kind == "subnet":
        try:
            ctx.core.ops.networks.get_network(shapes.to_onepane(rid, "subnet"))
            return True
        except NotFound:
            return False
    if kind == "sg":
        return rid in {g.id for g in ctx.core.security_groups.find()}
    if kind == "ami":
        return any(i.id == rid for i in ctx.core.ops.images.list_images(limit=100_000))
    return rid in {r.id for k in ("igw", "rtb", "dopt", "eni", "eip", "cgw")
                   for r in ctx.core.records.find(k)}


def other_tags(ctx: Context, rid: str) -> dict[str, str]:
    return dict(ctx.core.annotations.get(rid).attributes.get("ec2.tags") or {})


def _tags_of(ctx: Context, kind: str, rid: str) -> dict[str, str]:
    if kind == "snapshot":
        return ctx.core.snapshots.get(rid).tags
    if kind == "volume":
        return ctx.core.ops.volumes.get_volume(rid).tags
    if kind == "other":
        return other_tags(ctx, rid)
    return ctx.core.ops.instances.get_instance(rid).tags


def _retag(ctx: Context, kind: str, rid: str, add: dict[str, str],
           remove: dict[str, str | None]) -> None:
    if kind == "snapshot":
        ctx.core.snapshots.retag(rid, add, remove)
    elif kind == "other":
        tags = {**other_tags(ctx, rid), **add}
        for k, v in remove.items():
            if k in tags and (v is None or tags[k] == v):
                del tags[k]
        note = ctx.core.annotations.get(rid)
        ctx.core.annotations.put(rid, {**note.attributes, "ec2.tags": tags}, note.categories)
    else:
        ctx.core.ops.instances.retag(rid, add, remove)


@action(READ_ONLY)
def DescribeTags(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = TAG_FILTERS.parse(p)
    if bad := set(flt.get("resource-type", [])) - {
            "instance", "volume", "snapshot", *RESOURCE_TYPES.values()}:
        raise Ec2Error("InvalidParameterValue", f"resource-type {sorted(bad)[0]!r}: onepane "
                       "has no such resource to tag")
    rows: list[dict[str, str]] = []
    if TAG_FILTERS.allows(flt, "resource-type", "instance"):
        for inst in every(ctx.core.ops.instances.list_instances):
            rid = shapes.instance_id(inst.id)
            rows.extend({"resourceId": rid, "resourceType": "instance", "key": k, "value": v}
                        for k, v in sorted(inst.tags.items()))
    if TAG_FILTERS.allows(flt, "resource-type", "volume"):
        for vol in every(ctx.core.ops.volumes.list_volumes):
            rows.extend({"resourceId": vol.id, "resourceType": "volume", "key": k, "value": v}
                        for k, v in sorted(vol.tags.items()))
    for rid, note in ctx.core.annotations.all().items():
        kind = RESOURCE_TYPES.get(rid.split("-", 1)[0]) or (
            "image" if "ec2.tags" in note.attributes and "-" not in rid else None)
        if kind and TAG_FILTERS.allows(flt, "resource-type", kind):
            rows.extend({"resourceId": rid, "resourceType": kind, "key": k, "value": v}
                        for k, v in sorted((note.attributes.get("ec2.tags") or {}).items()))
    if TAG_FILTERS.allows(flt, "resource-type", "snapshot"):
        for snap in ctx.core.snapshots.find():
            rows.extend({"resourceId": snap.id, "resourceType": "snapshot", "key": k, "value": v}
                        for k, v in sorted(snap.tags.items()))
    rows = TAG_FILTERS.apply(flt, rows)
    limit = integer(p, "MaxResults", None, low=5, high=1000)
    start = integer(p, "NextToken", 0, low=0) or 0
    if limit is None:
        return {"tagSet": rows[start:]}
    nxt = str(start + limit) if start + limit < len(rows) else None
    return {"tagSet": rows[start:start + limit], "nextToken": nxt}


TAG_FILTERS = FilterTable({"resource-id": key("resourceId"), "resource-type": key("resourceType"),
                           "key": key("key"), "value": key("value")})


def _tag_specs(p: dict[str, Any], kind: str, made_none: tuple[str, ...] = ()) -> dict[str, str]:
    """The tags a create's TagSpecifications give the `kind` it makes. `made_none`: kinds EC2
    makes along with it that onepane does not (RunInstances' EBS root volume: an instance's
    disk is its location's), whose tags are checked like any and apply to nothing; any other
    kind is refused, never dropped."""
    tags: dict[str, str] = {}
    for spec in members(p, "TagSpecification"):
        rtype = spec.get("ResourceType", kind)
        if rtype != kind and rtype not in made_none:
            raise Ec2Error("InvalidParameterValue", f"TagSpecification ResourceType "
                           f"{rtype!r} does not apply here; use {kind!r}")
        these = {t.get("Key", ""): t.get("Value", "") for t in members(spec, "Tag")}
        if "" in these:
            raise Ec2Error("InvalidParameterValue", "a tag needs a non-empty Key")
        _check_tags(these)
        if rtype == kind:
            tags.update(these)
    _check_tags(tags)
    return tags


# ---- volumes ----------------------------------------------------------------------------------

@action(WRITE)
def CreateVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    zone = required(p, "AvailabilityZone")
    size = integer(p, "Size", low=1, high=16384)
    if p.get("VolumeType") not in (None, "standard", "gp2", "gp3"):
        raise Ec2Error("InvalidParameterValue", f"VolumeType {p['VolumeType']!r}: onepane's "
                       "volumes are one kind (standard; gp2 and gp3 are taken as it)")
    if str(p.get("Encrypted", "false")).lower() == "true" or p.get("Iops") or p.get("KmsKeyId"):
        raise Ec2Error("UnsupportedOperation", "onepane's volumes are not encrypted and have no "
                       "provisioned IOPS")
    tags = _tag_specs(p, "volume")
    token = p.get("ClientToken")
    name = slug(tags.get("Name")) or "ec2-volume"
    if p.get("SnapshotId"):
        job = ctx.core.snapshots.restore(p["SnapshotId"], name, zone, size, tags)
        ctx.core.annotations.put(job.target or "", {"ec2.snapshot": p["SnapshotId"]}, [])
        settle(ctx.core, [job.id])
        return shapes.volume(ctx.core.ops.volumes.get_volume(job.target or ""), p["SnapshotId"])
    if size is None:
        raise Ec2Error("MissingParameter", "the request must contain the parameter Size")
    try:
        job = ctx.core.ops.volumes.create_volume(
            VolumeCreate(name=name, location=zone, size_gb=size, tags=tags),
            f"ec2:{ctx.key_id}:{token}" if token else None)
    except IdempotencyMismatch as exc:
        raise Ec2Error("IdempotentParameterMismatch", f"ClientToken {token!r} was used before "
                       "with other parameters") from exc
    settle(ctx.core, [job.id])  # usually available by now (a client's waiter need not wait)
    return shapes.volume(ctx.core.ops.volumes.get_volume(job.target or ""))


@action(WRITE)
def AttachVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    refuse_root(ctx, required(p, "VolumeId"), "attached")
    vol = ctx.core.ops.volumes.get_volume(shapes.to_onepane(required(p, "VolumeId"), "volume"))
    inst = _instance(ctx, required(p, "InstanceId"))
    device = required(p, "Device")
    if vol.attached_to:
        raise Ec2Error("VolumeInUse", f"{vol.id} is already attached to "
                       f"{shapes.instance_id(vol.attached_to)}")
    if vol.location != inst.location:
        raise Ec2Error("InvalidVolume.ZoneMismatch", f"volume {vol.id} is in {vol.location}, "
                       f"instance {shapes.instance_id(inst.id)} in {inst.location}")
    job = ctx.core.ops.volumes.attach_volume(vol.id, VolumeAttach(instance=inst.id, device=device))
    settle(ctx.core, [job.id])  # the answer says attaching, as EC2's does; a look after it,
    return {"volumeId": vol.id, "instanceId": shapes.instance_id(inst.id), "device": device,
            "status": "attaching", "attachTime": vol.created_at}  # usually in-use


@action(WRITE)
def DetachVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    refuse_root(ctx, required(p, "VolumeId"), "detached")
    vol = ctx.core.ops.volumes.get_volume(shapes.to_onepane(required(p, "VolumeId"), "volume"))
    settle(ctx.core, [ctx.core.ops.volumes.detach_volume(vol.id).id])
    return {"volumeId": vol.id, "instanceId": shapes.instance_id(vol.attached_to or "x-"),
            "device": vol.device or "", "status": "detaching", "attachTime": vol.created_at}


@action(WRITE)
def DeleteVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    refuse_root(ctx, required(p, "VolumeId"), "deleted")
    vol = ctx.core.ops.volumes.get_volume(shapes.to_onepane(required(p, "VolumeId"), "volume"))
    if vol.attached_to:
        raise Ec2Error("VolumeInUse", f"{vol.id} is attached to "
                       f"{shapes.instance_id(vol.attached_to)}; detach it first")
    settle(ctx.core, [ctx.core.ops.volumes.delete_volume(vol.id).id])
    return {"return": True}


@action(READ_ONLY)
def DescribeVolumes(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = VOLUME_FILTERS.parse(p)
    vols = _volumes(ctx, p)
    notes = {k: n.attributes for k, n in ctx.core.annotations.all().items()}
    return {"volumeSet": VOLUME_FILTERS.apply(flt, (
        shapes.volume(x, root_snapshot(ctx, x) if is_root(x) else
                      str(notes.get(x.id, {}).get("ec2.snapshot", "")),
                      is_root(x) or bool(notes.get(x.id, {}).get("ec2.deleteOnTermination")))
        for x in vols))}


def _volumes(ctx: Context, p: dict[str, Any]) -> list[Volume]:
    """The volumes `VolumeId.N` names (each must exist), or every volume; instances' root
    volumes among them (root_volumes.py)."""
    ids = members(p, "VolumeId")
    if not ids:
        return list(every(ctx.core.ops.volumes.list_volumes)) + all_roots(ctx)
    return [find_root(ctx, v) or ctx.core.ops.volumes.get_volume(shapes.to_onepane(v, "volume"))
            for v in ids]


@action(READ_ONLY)
def DescribeVolumeStatus(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Every volume is `ok` unless its location reports it in error: onepane runs no I/O
    consistency checks of its own, so there are never events or actions to report."""
    out: list[dict[str, Any]] = []
    for vol in _volumes(ctx, p):
        state = "impaired" if shapes.volume_status(vol) == "error" else "ok"
        out.append({"volumeId": vol.id, "availabilityZone": vol.location,
                    "volumeStatus": {"status": state, "details": [
                        {"name": "io-enabled", "status": "passed" if state == "ok" else "failed"},
                        {"name": "io-performance", "status": "not-applicable"}]},
                    "eventsSet": [], "actionsSet": []})
    return {"volumeStatusSet": out}


VOLUME_FILTERS = FilterTable({
    "volume-id": key("volumeId"), "availability-zone": key("availabilityZone"),
    "status": key("status"), "snapshot-id": key("snapshotId"), "size": key("size"),
    "attachment.instance-id": each("attachmentSet", "instanceId"),
    "attachment.status": each("attachmentSet", "status"),
    "attachment.device": each("attachmentSet", "device")}, tags=tag_set)
