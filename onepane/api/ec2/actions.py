"""One function per EC2 action, each a translation onto onepane's own services.

Nothing here decides anything the native API would decide differently: validation, jobs,
idempotency and roles are the services' (DESIGN.md, Interfaces).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ...core import Core
from ...errors import IdempotencyMismatch, NotFound
from ...inventory.operations import every
from ...model import Instance, InstanceCreate, InstanceState, VolumeAttach, VolumeCreate, slug
from . import shapes
from .wire import Ec2Error, filters, integer, members, required

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
    flt = filters(p)
    _check_filters(flt, {"zone-name", "state", "region-name"})
    zones = [z for z in zones if (not wanted or z["zoneName"] in wanted)
             and _match(flt, "zone-name", z["zoneName"]) and _match(flt, "state", z["zoneState"])
             and _match(flt, "region-name", z["regionName"])]
    return {"availabilityZoneInfo": zones}


# ---- instances --------------------------------------------------------------------------------

INSTANCE_FILTERS = {"instance-id", "instance-state-name", "availability-zone", "instance-type",
                    "image-id", "tag-key", "tag-value"}


@action(READ_ONLY)
def DescribeInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = filters(p)
    _check_filters(flt, INSTANCE_FILTERS, tags=True)
    ids = members(p, "InstanceId")
    max_results = integer(p, "MaxResults", None, low=5, high=1000)
    if ids and max_results is not None:
        raise Ec2Error("InvalidParameterCombination",
                       "MaxResults cannot be used together with InstanceId")
    ops = ctx.core.ops
    if ids:
        found = [_instance_or_terminated(ctx, i) for i in ids]
        return {"reservationSet": [shapes.reservation([i]) for i in found if _keep(flt, i)]}
    # Push what SQL can do (one zone, single-valued tags) into the query; filter the rest here.
    zones = flt.get("availability-zone", [])
    tags = {k[4:]: v[0] for k, v in flt.items() if k.startswith("tag:") and len(v) == 1}
    kw: dict[str, Any] = {"location": zones[0] if len(zones) == 1 else None, "tags": tags or None}
    out: list[Instance] = []
    cursor = p.get("NextToken") or None
    want = max_results or 1_000_000
    while len(out) < want:
        page = ops.list_instances(limit=min(1000, want - len(out)), cursor=cursor, **kw)
        out.extend(i for i in page.items if _keep(flt, i))
        cursor = page.next_cursor
        if not cursor:
            break
    return {"reservationSet": [shapes.reservation([i]) for i in out],
            "nextToken": cursor if max_results else None}


def _keep(flt: dict[str, list[str]], inst: Instance) -> bool:
    if not flt:
        return True
    if not (_match(flt, "instance-id", shapes.instance_id(inst.id))
            and _match(flt, "instance-state-name", shapes.state_of(inst)["name"])
            and _match(flt, "availability-zone", inst.location)
            and _match(flt, "instance-type", inst.size) and _match(flt, "image-id", inst.image)
            and _match_any(flt, "tag-key", inst.tags.keys())
            and _match_any(flt, "tag-value", inst.tags.values())):
        return False
    return all(inst.tags.get(k[4:]) in v for k, v in flt.items() if k.startswith("tag:"))


@action(WRITE)
def RunInstances(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image = required(p, "ImageId")
    size = p.get("InstanceType") or "t2.micro"
    low = integer(p, "MinCount", low=1, high=100)
    high = integer(p, "MaxCount", low=1, high=100)
    if low is None or high is None:
        raise Ec2Error("MissingParameter", "the request must contain MinCount and MaxCount")
    if low > high:
        raise Ec2Error("InvalidParameterValue", "MinCount must not be larger than MaxCount")
    zone = (p.get("Placement") or {}).get("AvailabilityZone") or ctx.core.locations.default()
    network = shapes.to_onepane(p["SubnetId"], "subnet") if p.get("SubnetId") else None
    tags = _tag_specs(p, "instance")
    token = p.get("ClientToken")
    if token and len(token) > 64:
        raise Ec2Error("InvalidParameterValue", "ClientToken must be at most 64 characters")
    base = slug(tags.get("Name")) or "ec2"
    insts = []
    for n in range(high):
        name = base if high == 1 else f"{base[:58]}-{n}"
        req = InstanceCreate(name=name, location=zone, image=image, size=size, tags=tags,
                             network=network)
        key = f"ec2:{ctx.key_id}:{token}:{n}" if token else None
        try:
            job = ctx.core.ops.create_instance(req, key)
        except IdempotencyMismatch as exc:
            raise Ec2Error("IdempotentParameterMismatch", f"ClientToken {token!r} was used "
                           "before with other parameters") from exc
        inst = ctx.core.ops.get_instance(job.target or "")
        if (inst.image, inst.size, inst.location) != (image, size, zone):
            raise Ec2Error("IdempotentParameterMismatch", f"ClientToken {token!r} was used before "
                           "with other parameters")
        insts.append(inst)
    body = shapes.reservation(insts)
    for item in body["instancesSet"]:
        item["clientToken"] = token
    return body


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
    ids = members(p, "InstanceId")
    if not ids:
        raise Ec2Error("MissingParameter", "the request must contain the parameter InstanceId")
    insts = [_instance(ctx, i) for i in ids]  # every id checked before anything is done
    out = []
    for inst in insts:
        if verb == "destroy":
            ctx.core.ops.destroy_instance(inst.id)
        else:
            ctx.core.ops.instance_action(inst.id, verb)
        out.append({"instanceId": shapes.instance_id(inst.id), "previousState": shapes.state_of(inst),
                    "currentState": current})
    return out


def _instance(ctx: Context, ec2_id: str) -> Instance:
    return ctx.core.ops.get_instance(shapes.to_onepane(ec2_id, "instance"))


def _instance_or_terminated(ctx: Context, ec2_id: str) -> Instance:
    """Like EC2, an instance asked for by id reads `terminated` for an hour after it is gone
    (what waiters such as `aws ec2 wait instance-terminated` look for). The record is the event
    log's: onepane keeps no tombstone rows."""
    try:
        return _instance(ctx, ec2_id)
    except NotFound:
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
    flt = filters(p)
    _check_filters(flt, {"image-id", "name", "availability-zone"})
    ids = set(members(p, "ImageId"))
    images = ctx.core.ops.list_images(flt.get("availability-zone"), limit=100_000)
    return {"imagesSet": [shapes.image(i) for i in images
                          if (not ids or i.id in ids) and _match(flt, "image-id", i.id)
                          and _match(flt, "name", i.name)]}


# ---- tags -------------------------------------------------------------------------------------

@action(WRITE)
def CreateTags(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    resources = _tag_targets(ctx, p)
    tags = {t.get("Key", ""): t.get("Value", "") for t in members(p, "Tag")}
    if not tags or "" in tags:
        raise Ec2Error("MissingParameter", "the request must contain Tag.N.Key")
    for rid in resources:
        ctx.core.ops.retag(rid, tags, {})
    return {"return": True}


@action(WRITE)
def DeleteTags(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    remove = {t.get("Key", ""): t.get("Value") for t in members(p, "Tag")}
    for rid in _tag_targets(ctx, p):
        ctx.core.ops.retag(rid, {}, remove)
    return {"return": True}


def _tag_targets(ctx: Context, p: dict[str, Any]) -> list[str]:
    ids = members(p, "ResourceId")
    if not ids:
        raise Ec2Error("MissingParameter", "the request must contain ResourceId.N")
    out = []
    for rid in ids:
        if rid.startswith("vol-"):
            out.append(ctx.core.ops.get_volume(shapes.to_onepane(rid, "volume")).id)
        else:
            out.append(_instance(ctx, rid).id)
    return out


@action(READ_ONLY)
def DescribeTags(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = filters(p)
    _check_filters(flt, {"resource-id", "resource-type", "key", "value"})
    rows: list[dict[str, str]] = []
    if _match(flt, "resource-type", "instance"):
        for inst in every(ctx.core.ops.list_instances):
            rid = shapes.instance_id(inst.id)
            rows.extend({"resourceId": rid, "resourceType": "instance", "key": k, "value": v}
                        for k, v in sorted(inst.tags.items()))
    if _match(flt, "resource-type", "volume"):
        for vol in every(ctx.core.ops.list_volumes):
            rows.extend({"resourceId": vol.id, "resourceType": "volume", "key": k, "value": v}
                        for k, v in sorted(vol.tags.items()))
    return {"tagSet": [r for r in rows if _match(flt, "resource-id", r["resourceId"])
                       and _match(flt, "key", r["key"]) and _match(flt, "value", r["value"])]}


def _tag_specs(p: dict[str, Any], kind: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for spec in members(p, "TagSpecification"):
        if spec.get("ResourceType", kind) != kind:
            raise Ec2Error("InvalidParameterValue", f"TagSpecification ResourceType "
                           f"{spec.get('ResourceType')!r} does not apply here; use {kind!r}")
        tags.update({t.get("Key", ""): t.get("Value", "") for t in members(spec, "Tag")})
    if "" in tags:
        raise Ec2Error("InvalidParameterValue", "a tag needs a non-empty Key")
    return tags


# ---- volumes ----------------------------------------------------------------------------------

@action(WRITE)
def CreateVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    zone = required(p, "AvailabilityZone")
    size = integer(p, "Size", low=1, high=16384)
    if size is None:
        raise Ec2Error("MissingParameter", "the request must contain the parameter Size")
    tags = _tag_specs(p, "volume")
    token = p.get("ClientToken")
    name = slug(tags.get("Name")) or "ec2-volume"
    try:
        job = ctx.core.ops.create_volume(
            VolumeCreate(name=name, location=zone, size_gb=size, tags=tags),
            f"ec2:{ctx.key_id}:{token}" if token else None)
    except IdempotencyMismatch as exc:
        raise Ec2Error("IdempotentParameterMismatch", f"ClientToken {token!r} was used before "
                       "with other parameters") from exc
    return shapes.volume(ctx.core.ops.get_volume(job.target or ""))


@action(WRITE)
def AttachVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vol = ctx.core.ops.get_volume(shapes.to_onepane(required(p, "VolumeId"), "volume"))
    inst = _instance(ctx, required(p, "InstanceId"))
    device = required(p, "Device")
    ctx.core.ops.attach_volume(vol.id, VolumeAttach(instance=inst.id, device=device))
    return {"volumeId": vol.id, "instanceId": shapes.instance_id(inst.id), "device": device,
            "status": "attaching", "attachTime": vol.created_at}


@action(WRITE)
def DetachVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vol = ctx.core.ops.get_volume(shapes.to_onepane(required(p, "VolumeId"), "volume"))
    ctx.core.ops.detach_volume(vol.id)
    return {"volumeId": vol.id, "instanceId": shapes.instance_id(vol.attached_to or "x-"),
            "device": vol.device or "", "status": "detaching", "attachTime": vol.created_at}


@action(WRITE)
def DeleteVolume(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vol = ctx.core.ops.get_volume(shapes.to_onepane(required(p, "VolumeId"), "volume"))
    ctx.core.ops.delete_volume(vol.id)
    return {"return": True}


@action(READ_ONLY)
def DescribeVolumes(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = filters(p)
    _check_filters(flt, {"volume-id", "availability-zone", "status", "attachment.instance-id"},
                   tags=True)
    ids = members(p, "VolumeId")
    vols = ([ctx.core.ops.get_volume(shapes.to_onepane(v, "volume")) for v in ids] if ids
            else list(every(ctx.core.ops.list_volumes)))
    out = []
    for v in map(shapes.volume, vols):
        attached = [a["instanceId"] for a in v["attachmentSet"]]
        tags = {t["key"]: t["value"] for t in v["tagSet"]}
        if (_match(flt, "volume-id", v["volumeId"]) and _match(flt, "status", v["status"])
                and _match(flt, "availability-zone", v["availabilityZone"])
                and _match_any(flt, "attachment.instance-id", attached)
                and all(tags.get(k[4:]) in vals for k, vals in flt.items() if k.startswith("tag:"))):
            out.append(v)
    return {"volumeSet": out}


# ---- networks ---------------------------------------------------------------------------------

@action(READ_ONLY)
def DescribeVpcs(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = filters(p)
    _check_filters(flt, {"vpc-id", "cidr", "state"})
    ids = {shapes.to_onepane(v, "vpc") for v in members(p, "VpcId")}
    nets = [n for n in every(ctx.core.ops.list_networks) if not ids or n.id in ids]
    if missing := ids - {n.id for n in nets}:
        raise Ec2Error("InvalidVpcID.NotFound", f"the vpc ID 'vpc-{sorted(missing)[0][4:]}' "
                       "does not exist")
    return {"vpcSet": [v for v in map(shapes.vpc, nets) if _match(flt, "vpc-id", v["vpcId"])
                       and _match(flt, "cidr", v["cidrBlock"]) and _match(flt, "state", v["state"])]}


@action(READ_ONLY)
def DescribeSubnets(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = filters(p)
    _check_filters(flt, {"subnet-id", "vpc-id", "availability-zone", "cidr-block", "state"})
    ids = {shapes.to_onepane(v, "subnet") for v in members(p, "SubnetId")}
    nets = [n for n in every(ctx.core.ops.list_networks) if not ids or n.id in ids]
    if missing := ids - {n.id for n in nets}:
        raise Ec2Error("InvalidSubnetID.NotFound", f"the subnet ID 'subnet-{sorted(missing)[0][4:]}'"
                       " does not exist")
    return {"subnetSet": [s for s in map(shapes.subnet, nets)
                          if _match(flt, "subnet-id", s["subnetId"]) and _match(flt, "vpc-id", s["vpcId"])
                          and _match(flt, "availability-zone", s["availabilityZone"])
                          and _match(flt, "cidr-block", s["cidrBlock"])
                          and _match(flt, "state", s["state"])]}


# ---- filters ----------------------------------------------------------------------------------

def _check_filters(flt: dict[str, list[str]], known: set[str], *, tags: bool = False) -> None:
    for name in flt:
        if name not in known and not (tags and name.startswith("tag:")):
            raise Ec2Error("InvalidParameterValue", f"the filter {name!r} is invalid here; "
                           f"supported: {', '.join(sorted(known))}{', tag:<key>' if tags else ''}")


def _match(flt: dict[str, list[str]], name: str, value: str) -> bool:
    return name not in flt or value in flt[name]


def _match_any(flt: dict[str, list[str]], name: str, values: Any) -> bool:
    return name not in flt or any(v in flt[name] for v in values)
