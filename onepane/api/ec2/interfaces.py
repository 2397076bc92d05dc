"""EC2 network interfaces (ENIs) as resources of their own.

An instance in a subnet has its primary interface (`eni-<instance hex>`, shapes.py), which is
the instance's place in onepane's network. Interfaces made with CreateNetworkInterface are
records (like gateways and route tables, inventory/records.py): each holds addresses taken
from its subnet's plan — counted in the subnet's `availableIpAddressCount`, never handed out
twice, the first four and the last of the block reserved as EC2 reserves them — its groups,
description and source/destination check, and its attachment to an instance. What onepane does
not do yet is plumb a second interface into a running instance: an attachment is recorded, not
wired (the README says so); the primary interface is the one that carries traffic.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ...errors import OnepaneError
from ...inventory.paging import every
from ...inventory.records import Record, record_id
from ...model import Instance, Network
from . import shapes
from .actions import (
    READ_ONLY,
    WRITE,
    Context,
    _groups_for,
    _instance,
    _tag_specs,
    action,
    extras,
    other_tags,
    set_ec2_notes,
)
from .filtering import FilterTable, each, key, tag_set
from .wire import Ec2Error, integer, members, required

ENI = "eni"
ATTRIBUTES = ("description", "sourceDestCheck", "groupSet", "attachment")


# ---- addresses --------------------------------------------------------------------------------

def _subnet(ctx: Context, subnet_id: str) -> Network:
    try:
        return ctx.core.ops.networks.get_network(shapes.to_onepane(subnet_id, "subnet"))
    except Exception as exc:
        raise Ec2Error("InvalidSubnetID.NotFound", f"the subnet ID '{subnet_id}' does not "
                       "exist") from exc


def used_addresses(ctx: Context, network_id: str) -> set[str]:
    """Every address the subnet's interfaces hold. An instance's primary interface holds the
    address its location gives it (a process's host, a namespace's or the guest network's),
    which is not taken from the subnet's plan, so only the records count."""
    return {a["address"] for r in ctx.core.records.find(ENI)
            if r.attributes["subnet"] == network_id for a in r.attributes["addresses"]}


def free_count(ctx: Context, net: Network) -> int:
    """What DescribeSubnets says is left: counted, not listed (a /16 has 65,531)."""
    lo, hi = _plan(net)
    return max(0, hi - lo) - len(used_addresses(ctx, net.id))


def _plan(net: Network) -> tuple[int, int]:
    """The addresses EC2 would hand out, as [lo, hi) integers: the block without its first
    four and its last."""
    block = ipaddress.ip_network(net.cidr or "0.0.0.0/32")
    first = int(block.network_address)
    return first + 4, first + block.num_addresses - 1


def _in_plan(net: Network, address: str) -> bool:
    """Whether `address` is one EC2 would hand out in the subnet (not a reserved one)."""
    lo, hi = _plan(net)
    try:
        return lo <= int(ipaddress.ip_address(address)) < hi
    except ValueError:
        return False


def _take(ctx: Context, net: Network, wanted: list[str], count: int) -> list[str]:
    (lo, hi), used = _plan(net), used_addresses(ctx, net.id)
    for a in wanted:
        if not _in_plan(net, a):
            raise Ec2Error("InvalidParameterValue", f"address {a} is not in subnet "
                           f"{net.cidr} (or is one of its reserved addresses)")
        if a in used:
            raise Ec2Error("InvalidIPAddress.InUse", f"address {a} is in use")
    free: list[str] = []
    for n in range(lo, hi):  # the lowest free ones, stopping as soon as there are enough
        if len(free) == count:
            break
        a = str(ipaddress.ip_address(n))
        if a not in used and a not in wanted:
            free.append(a)
    if len(free) < count:
        raise Ec2Error("InsufficientFreeAddressesInSubnet", f"subnet {net.cidr} has "
                       f"{len(free)} free addresses, not {count}")
    return [*wanted, *free]


def check_launch(ctx: Context, p: dict[str, Any]) -> None:
    """What RunInstances says of interfaces and addresses, checked as EC2 checks it, before
    onepane says what it cannot honour: a malformed request gets EC2's own error."""
    seen: set[str] = set()
    for n, nic in enumerate(members(p, "NetworkInterface"), 1):
        if "DeviceIndex" not in nic:
            raise Ec2Error("InvalidParameterValue", f"NetworkInterface.{n}.DeviceIndex is "
                           "required: each network interface needs one")
        if str(nic["DeviceIndex"]) in seen:
            raise Ec2Error("InvalidParameterValue", f"NetworkInterface.{n}: device index "
                           f"{nic['DeviceIndex']} is given twice")
        seen.add(str(nic["DeviceIndex"]))
        if nic.get("NetworkInterfaceId") and (
                str(nic.get("DeleteOnTermination", "false")).lower() == "true"
                or nic.get("SubnetId") or nic.get("PrivateIpAddress")):
            raise Ec2Error("InvalidParameterCombination", f"NetworkInterface.{n}: an existing "
                           "interface (NetworkInterfaceId) comes with its subnet and address "
                           "and is not deleted on termination")
    wanted = p.get("PrivateIpAddress")
    if not wanted:
        return
    first: dict[str, Any] = next(iter(members(p, "NetworkInterface")), {})
    subnet = p.get("SubnetId") or first.get("SubnetId")
    if not subnet:
        raise Ec2Error("InvalidParameterValue", f"PrivateIpAddress {wanted}: an address of a "
                       "subnet, and no SubnetId names one")
    if not _in_plan(_subnet(ctx, subnet), wanted):
        raise Ec2Error("InvalidParameterValue", f"PrivateIpAddress {wanted} is not an address "
                       f"of subnet {subnet} (or is one of its reserved addresses)")


# ---- shapes -----------------------------------------------------------------------------------

def _shape(ctx: Context, r: Record) -> dict[str, Any]:
    a = r.attributes
    primary = a["addresses"][0]["address"]
    names = {g.id: g.name for g in ctx.core.security_groups.find()}
    hex_id = r.id.split("-", 1)[1]
    att = a.get("attachment")
    return {
        "networkInterfaceId": r.id, "subnetId": "subnet-" + a["subnet"].split("-", 1)[1],
        "vpcId": a["vpc"], "availabilityZone": a["zone"], "description": a["description"],
        "ownerId": shapes.OWNER, "requesterManaged": False,
        "status": "in-use" if att else "available",
        "macAddress": shapes.mac_of(hex_id),
        "privateIpAddress": primary, "privateDnsName": shapes.private_dns(primary),
        "sourceDestCheck": a["sourceDestCheck"], "interfaceType": "interface",
        "groupSet": [{"groupId": g, "groupName": names.get(g, g)} for g in a["groups"]],
        "attachment": {"attachmentId": att["id"], "instanceId": att["instance"],
                       "instanceOwnerId": shapes.OWNER, "deviceIndex": att["deviceIndex"],
                       "status": "attached", "attachTime": r.created_at,
                       "deleteOnTermination": att["deleteOnTermination"]} if att else None,
        "privateIpAddressesSet": [{"privateIpAddress": x["address"], "primary": x["primary"],
                                   "privateDnsName": shapes.private_dns(x["address"])}
                                  for x in a["addresses"]],
        "tagSet": shapes.tag_set(other_tags(ctx, r.id))}


def attached(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """Instance id -> the interfaces attached to it besides its own, as DescribeInstances
    lists them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in ctx.core.records.find(ENI):
        if att := r.attributes.get("attachment"):
            out.setdefault(shapes.to_onepane(att["instance"], "instance"), []).append(
                _shape(ctx, r))
    return out


def has_others(ctx: Context, instance_id: str) -> bool:
    """Whether an interface besides its own is attached to the instance."""
    ec2_id = shapes.instance_id(instance_id)
    return any((r.attributes.get("attachment") or {}).get("instance") == ec2_id
               for r in ctx.core.records.find(ENI))


def _primaries(ctx: Context) -> list[dict[str, Any]]:
    """The instances' own interfaces, as DescribeInstances shows them."""
    ex = extras(ctx)
    return [_primary_shape(ctx, inst, ex) for inst in every(ctx.core.ops.instances.list_instances)
            if inst.network is not None]


def _primary(ctx: Context, eni_id: str) -> dict[str, Any] | None:
    """The instance's own interface `eni_id` names, if that is what it names: its id is the
    instance's, so one lookup finds it."""
    try:
        inst = ctx.core.ops.instances.get_instance("inst-" + eni_id.removeprefix("eni-"))
    except OnepaneError:
        return None
    return None if inst.network is None else _primary_shape(ctx, inst, extras(ctx))


def _primary_shape(ctx: Context, inst: Instance, ex: shapes.Extras) -> dict[str, Any]:
    from .vpc import _vpc_of
    assert inst.network is not None
    net = ctx.core.ops.networks.get_network(inst.network)
    body = shapes.network_interface(inst, _vpc_of(ctx, net), ex.groups.get(inst.id, []),
                                    ex.source_dest.get(inst.id, True))
    body["attachment"]["instanceId"] = shapes.instance_id(inst.id)
    body.update(availabilityZone=inst.location, interfaceType="interface",
                requesterManaged=False, tagSet=[])
    return body


ENI_FILTERS = FilterTable({
    "network-interface-id": key("networkInterfaceId"), "subnet-id": key("subnetId"),
    "vpc-id": key("vpcId"), "availability-zone": key("availabilityZone"),
    "description": key("description"), "status": key("status"),
    "private-ip-address": each("privateIpAddressesSet", "privateIpAddress"),
    "addresses.private-ip-address": each("privateIpAddressesSet", "privateIpAddress"),
    "group-id": each("groupSet", "groupId"), "group-name": each("groupSet", "groupName"),
    "attachment.instance-id": lambda i: [(i.get("attachment") or {}).get("instanceId") or ""],
    "attachment.attachment-id": lambda i: [(i.get("attachment") or {}).get("attachmentId")
                                           or ""],
    "source-dest-check": lambda i: str(i["sourceDestCheck"]).lower(),
    "owner-id": key("ownerId")}, tags=tag_set)


def _find(ctx: Context, eni_id: str) -> Record | None:
    return next((r for r in ctx.core.records.find(ENI) if r.id == eni_id), None)


def _record(ctx: Context, eni_id: str) -> Record:
    found = _find(ctx, eni_id)
    if found is None:
        if _primary(ctx, eni_id) is not None:
            raise Ec2Error("OperationNotPermitted", f"{eni_id} is an instance's primary "
                           "interface: it comes and goes with the instance")
        raise Ec2Error("InvalidNetworkInterfaceID.NotFound", f"the networkInterface ID "
                       f"'{eni_id}' does not exist")
    return found


# ---- actions ----------------------------------------------------------------------------------

@action(WRITE)
def CreateNetworkInterface(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from .vpc import _vpc_of
    net = _subnet(ctx, required(p, "SubnetId"))
    tags = _tag_specs(p, "network-interface")
    wanted = [p["PrivateIpAddress"]] if p.get("PrivateIpAddress") else []
    wanted += [x["PrivateIpAddress"] for x in members(p, "PrivateIpAddresses")
               if x.get("PrivateIpAddress") and x["PrivateIpAddress"] not in wanted]
    extra = integer(p, "SecondaryPrivateIpAddressCount", 0, low=0, high=30) or 0
    groups = [g.id for g in _groups_for(ctx, p, net.id)]  # none given: its VPC's default
    addresses = _take(ctx, net, wanted, extra + (0 if wanted else 1))
    r = ctx.core.records.add(ENI, "eni", {
        "subnet": net.id, "vpc": _vpc_of(ctx, net), "zone": net.location,
        "description": p.get("Description") or "", "groups": groups,
        "sourceDestCheck": True, "attachment": None,
        "addresses": [{"address": a, "primary": n == 0} for n, a in enumerate(addresses)]})
    if tags:
        ctx.core.annotations.put(r.id, {"ec2.tags": tags}, [])
    return {"networkInterface": _shape(ctx, r)}


@action(READ_ONLY)
def DescribeNetworkInterfaces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = ENI_FILTERS.parse(p)
    ids = members(p, "NetworkInterfaceId")
    items = [_shape(ctx, r) for r in ctx.core.records.find(ENI)] + _primaries(ctx)
    if missing := set(ids) - {i["networkInterfaceId"] for i in items}:
        raise Ec2Error("InvalidNetworkInterfaceID.NotFound", f"the networkInterface ID "
                       f"'{sorted(missing)[0]}' does not exist")
    return {"networkInterfaceSet": ENI_FILTERS.apply(
        flt, (i for i in items if not ids or i["networkInterfaceId"] in ids))}


@action(WRITE)
def DeleteNetworkInterface(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _record(ctx, required(p, "NetworkInterfaceId"))
    if r.attributes.get("attachment"):  # the code EC2 answers (tempest checks it)
        raise Ec2Error("InvalidParameterValue", f"{r.id} is attached to "
                       f"{r.attributes['attachment']['instance']}; detach it first")
    ctx.core.records.delete(r.id)
    ctx.core.annotations.forget(r.id)
    ctx.core.addresses.forget_interface(r.id)  # its elastic addresses, as EC2 does
    return {"return": True}


@action(WRITE)
def AttachNetworkInterface(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _record(ctx, required(p, "NetworkInterfaceId"))
    inst = _instance(ctx, required(p, "InstanceId"))
    index = integer(p, "DeviceIndex", None, low=0, high=15)
    if index is None:
        raise Ec2Error("MissingParameter", "the request must contain the parameter DeviceIndex")
    if r.attributes.get("attachment"):
        raise Ec2Error("InvalidNetworkInterface.InUse", f"{r.id} is attached already")
    if inst.location != r.attributes["zone"]:
        raise Ec2Error("InvalidParameterValue", f"{r.id} is in {r.attributes['zone']}, the "
                       f"instance in {inst.location}")
    taken = {0} | {x.attributes["attachment"]["deviceIndex"] for x in ctx.core.records.find(ENI)
                   if (x.attributes.get("attachment") or {}).get("instance")
                   == shapes.instance_id(inst.id)}
    if index in taken:
        raise Ec2Error("InvalidParameterValue", f"device index {index} is in use on "
                       f"{shapes.instance_id(inst.id)}")
    attachment = {"id": record_id("eni-attach"), "instance": shapes.instance_id(inst.id),
                  "deviceIndex": index, "deleteOnTermination": False}
    ctx.core.records.update(r.id, attachment=attachment)
    ctx.core.addresses.changed()  # its addresses reach the instance, or stop to
    return {"attachmentId": attachment["id"]}


def _by_attachment(ctx: Context, attachment_id: str) -> Record:
    for r in ctx.core.records.find(ENI):
        if (r.attributes.get("attachment") or {}).get("id") == attachment_id:
            return r
    raise Ec2Error("InvalidAttachmentID.NotFound", f"the attachment ID '{attachment_id}' "
                   "does not exist")


@action(WRITE)
def DetachNetworkInterface(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _by_attachment(ctx, required(p, "AttachmentId"))
    ctx.core.records.update(r.id, attachment=None)
    ctx.core.addresses.changed()  # its addresses reach the instance, or stop to
    return {"return": True}


def released_with(ctx: Context, instance_ec2_id: str) -> None:
    """An instance terminated: its interfaces that say so go with it, the others stay,
    detached (what TerminateInstances calls)."""
    for r in ctx.core.records.find(ENI):
        att = r.attributes.get("attachment") or {}
        if att.get("instance") != instance_ec2_id:
            continue
        if att.get("deleteOnTermination"):
            ctx.core.records.delete(r.id)
            ctx.core.annotations.forget(r.id)
            ctx.core.addresses.forget_interface(r.id)
        else:
            ctx.core.records.update(r.id, attachment=None)


def any_interface(ctx: Context, eni_id: str) -> dict[str, Any]:
    """An interface as DescribeNetworkInterfaces shows it: a record's or an instance's own."""
    if (found := _find(ctx, eni_id)) is not None:
        return _shape(ctx, found)
    return _primary(ctx, eni_id) or _shape(ctx, _record(ctx, eni_id))


@action(READ_ONLY)
def DescribeNetworkInterfaceAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    eni_id = required(p, "NetworkInterfaceId")
    name = p.get("Attribute")
    if not name:
        raise Ec2Error("InvalidParameterCombination", "the request must name one Attribute")
    if name not in ATTRIBUTES:
        raise Ec2Error("InvalidParameterValue", f"Attribute is one of {', '.join(ATTRIBUTES)}")
    value = any_interface(ctx, eni_id)[name]
    if name in ("description", "sourceDestCheck"):
        value = {"value": value}
    return {"networkInterfaceId": eni_id, name: value}


@action(WRITE)
def ModifyNetworkInterfaceAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    eni_id = required(p, "NetworkInterfaceId")
    given = [k for k in ("Description", "SourceDestCheck", "SecurityGroupId", "Attachment")
             if k in p and (p[k] or {}) != {}]
    if len(given) != 1:
        raise Ec2Error("InvalidParameterCombination", "give exactly one of Description.Value, "
                       "SourceDestCheck.Value, SecurityGroupId.N, Attachment")
    primary = _primary(ctx, eni_id) if _find(ctx, eni_id) is None else None
    if primary is not None:  # an instance's own: its source/dest check is the instance's
        if given != ["SourceDestCheck"]:
            raise Ec2Error("UnsupportedOperation", f"{eni_id} is an instance's primary "
                           "interface: change its groups and attachment through the instance")
        set_ec2_notes(ctx, shapes.to_onepane(primary["attachment"]["instanceId"], "instance"),
                      sourceDestCheck=_bool(p["SourceDestCheck"]))
        return {"return": True}
    r = _record(ctx, eni_id)
    changes: dict[str, Any] = {}
    if given == ["Description"]:
        changes["description"] = p["Description"].get("Value", "")
    elif given == ["SourceDestCheck"]:
        changes["sourceDestCheck"] = _bool(p["SourceDestCheck"])
    elif given == ["SecurityGroupId"]:
        changes["groups"] = [ctx.core.security_groups.get(g).id
                             for g in members(p, "SecurityGroupId")]
    else:
        asked = p["Attachment"]
        if "DeleteOnTermination" not in asked:
            raise Ec2Error("MissingParameter", "Attachment needs DeleteOnTermination")
        att = dict(r.attributes.get("attachment") or {})
        if not att or att.get("id") != asked.get("AttachmentId"):
            raise Ec2Error("InvalidAttachmentID.NotFound", f"the attachment ID "
                           f"'{asked.get('AttachmentId')}' does not exist")
        att["deleteOnTermination"] = _bool({"Value": asked["DeleteOnTermination"]})
        changes["attachment"] = att
    ctx.core.records.update(r.id, **changes)
    return {"return": True}


def _bool(v: dict[str, Any]) -> bool:
    return str(v.get("Value")).lower() == "true"


@action(WRITE)
def AssignPrivateIpAddresses(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _record(ctx, required(p, "NetworkInterfaceId"))
    net = ctx.core.ops.networks.get_network(r.attributes["subnet"])
    wanted = members(p, "PrivateIpAddress")
    count = integer(p, "SecondaryPrivateIpAddressCount", 0, low=0, high=30) or 0
    if not wanted and not count:
        raise Ec2Error("MissingParameter", "give PrivateIpAddress.N or "
                       "SecondaryPrivateIpAddressCount")
    added = _take(ctx, net, wanted, count)
    ctx.core.records.update(r.id, addresses=[*r.attributes["addresses"],
                                             *({"address": a, "primary": False} for a in added)])
    return {"networkInterfaceId": r.id, "assignedPrivateIpAddressesSet": [
        {"privateIpAddress": a} for a in added]}


@action(WRITE)
def UnassignPrivateIpAddresses(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _record(ctx, required(p, "NetworkInterfaceId"))
    gone = set(members(p, "PrivateIpAddress"))
    if not gone:
        raise Ec2Error("MissingParameter", "the request must contain PrivateIpAddress.N")
    have = {a["address"]: a for a in r.attributes["addresses"]}
    for a in gone:
        if a not in have:
            raise Ec2Error("InvalidParameterValue", f"{a} is not an address of {r.id}")
        if have[a]["primary"]:
            raise Ec2Error("InvalidParameterValue", f"{a} is the primary address of {r.id}")
    ctx.core.records.update(r.id, addresses=[a for a in r.attributes["addresses"]
                                             if a["address"] not in gone])
    return {"return": True}


def is_record(ctx: Context, eni_id: str) -> bool:
    """Whether `eni_id` is an interface made by CreateNetworkInterface."""
    return _find(ctx, eni_id) is not None


def attached_instance(ctx: Context, eni_id: str) -> str | None:
    """The instance (onepane id) an interface belongs to: an instance's own, or one made by
    CreateNetworkInterface while it is attached; None otherwise."""
    found = _find(ctx, eni_id)
    if found is not None:
        att = found.attributes.get("attachment")
        return shapes.to_onepane(att["instance"], "instance") if att else None
    primary = _primary(ctx, eni_id)
    return None if primary is None else "inst-" + eni_id.removeprefix("eni-")
