"""What EC2 tools ask before anything else: the account's platforms and limits, elastic
addresses (onepane's own pool, inventory/addresses.py), instance types, and the state of
instances."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

from ...errors import Conflict, NotFound
from ...inventory.addresses import Address
from ...inventory.paging import every
from ...model import InstanceState
from . import shapes
from .actions import READ_ONLY, WRITE, Context, _instance, _tag_specs, action, other_tags, tags_at_create
from .filtering import FilterTable, key, tag_set
from .wire import Ec2Error, members


@action(READ_ONLY)
def DescribeAccountAttributes(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """onepane is a VPC-only account with no default VPC: a network is a VPC with one subnet,
    and an instance without one lives in its location's own network."""
    attrs = {"supported-platforms": ["VPC"], "default-vpc": ["none"],
             "max-instances": ["10000"], "max-elastic-ips": ["254"], "vpc-max-elastic-ips": ["254"],
             "vpc-max-security-groups-per-interface": ["5"]}
    wanted = members(p, "AttributeName")
    if unknown := set(wanted) - set(attrs):
        raise Ec2Error("InvalidParameterValue", f"unknown account attribute "
                       f"{sorted(unknown)[0]!r}; onepane has {', '.join(attrs)}")
    return {"accountAttributeSet": [
        {"attributeName": k, "attributeValueSet": [{"attributeValue": v} for v in vs]}
        for k, vs in attrs.items() if not wanted or k in wanted]}


ADDRESS_FILTERS = FilterTable({
    "allocation-id": key("allocationId"), "association-id": key("associationId"),
    "domain": key("domain"), "instance-id": key("instanceId"), "public-ip": key("publicIp"),
    "network-interface-id": key("networkInterfaceId"),
    "private-ip-address": key("privateIpAddress"),
    "network-border-group": key("networkBorderGroup")},
    tags=tag_set)


def _address(ctx: Context, a: Address) -> dict[str, Any]:
    """EC2's shape. An address associated with a deployment names the instance it reaches
    now (it changes on a failover), and says which deployment in the tag onepane:deployment."""
    tags = other_tags(ctx, a.id)
    if a.deployment:
        tags["onepane:deployment"] = a.deployment
    out: dict[str, Any] = {"publicIp": a.public_ip, "allocationId": a.id, "domain": "vpc",
                           "publicIpv4Pool": "onepane", "networkBorderGroup": "onepane",
                           "tagSet": shapes.tag_set(tags)}
    if a.association:
        out["associationId"] = a.association
        reaches = a.instance or a.routed_to
        if reaches:
            out["instanceId"] = shapes.instance_id(reaches)
        if a.interface or reaches:
            out["networkInterfaceOwnerId"] = shapes.OWNER
        if a.interface:  # its interface's first address, whether or not it is attached
            out["networkInterfaceId"] = a.interface
            with contextlib.suppress(Ec2Error):
                out["privateIpAddress"] = _interface_addresses(ctx, a.interface)[0]
        elif reaches:
            with contextlib.suppress(NotFound):
                inst = ctx.core.ops.instances.get_instance(reaches)
                if inst.addresses:
                    out["privateIpAddress"] = inst.addresses[0]
    return out


def _allocation(ctx: Context, p: dict[str, Any]) -> Address:
    """The address a request names, by AllocationId or PublicIp."""
    addresses = ctx.core.addresses
    if alloc := p.get("AllocationId"):
        try:
            return addresses.get(alloc)
        except NotFound as exc:
            raise Ec2Error("InvalidAllocationID.NotFound",
                           f"the allocation ID '{alloc}' does not exist") from exc
    if ip := p.get("PublicIp"):
        try:
            return addresses.by_ip(ip)
        except NotFound as exc:
            raise Ec2Error("InvalidAddress.NotFound", f"address {ip} not found") from exc
    raise Ec2Error("MissingParameter", "the request must contain PublicIp or AllocationId")


@action(READ_ONLY)
def DescribeAddresses(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = ADDRESS_FILTERS.parse(p)
    found = ctx.core.addresses.find()
    ids, ips = members(p, "AllocationId"), members(p, "PublicIp")
    for ip in ips:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError as exc:
            raise Ec2Error("InvalidParameterValue", f"{ip!r} is not an IPv4 address") from exc
    if missing := set(ids) - {a.id for a in found}:
        raise Ec2Error("InvalidAllocationID.NotFound",
                       f"the allocation ID '{sorted(missing)[0]}' does not exist")
    if missing := set(ips) - {a.public_ip for a in found}:
        raise Ec2Error("InvalidAddress.NotFound", f"address {sorted(missing)[0]} not found")
    chosen = [a for a in found if (not ids and not ips) or a.id in ids or a.public_ip in ips]
    return {"addressesSet": ADDRESS_FILTERS.apply(flt, (_address(ctx, a) for a in chosen))}


@action(WRITE)
def AllocateAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """An address from onepane's pool (10.200.0.0/24: reached only through onepane's own
    routes on this machine), routed where instances can be given one (netns and vm
    locations: Feature.addresses)."""
    domain = p.get("Domain", "vpc")
    if domain not in ("vpc", "standard"):
        raise Ec2Error("InvalidParameterValue", f"Domain {domain!r}: use vpc")
    for name in ("Address", "PublicIpv4Pool", "CustomerOwnedIpv4Pool", "IpamPoolId"):
        if p.get(name):
            raise Ec2Error("UnsupportedOperation", f"{name}: onepane gives the next address of "
                           "its own pool; a chosen address or pool is not offered")
    tags = _tag_specs(p, "elastic-ip")
    try:
        a = ctx.core.addresses.allocate()
    except Conflict as exc:
        raise Ec2Error("AddressLimitExceeded", exc.detail) from exc
    tags_at_create(ctx, p, "elastic-ip", "other", a.id, tags)
    return {"publicIp": a.public_ip, "allocationId": a.id, "domain": "vpc",
            "publicIpv4Pool": "onepane", "networkBorderGroup": "onepane"}


@action(WRITE)
def AssociateAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    a = _allocation(ctx, p)
    interface: str | None = None
    instance: str | None = None
    if p.get("InstanceId"):
        instance = _instance(ctx, p["InstanceId"]).id
    elif eni := p.get("NetworkInterfaceId"):
        instance, interface = _eni_target(ctx, eni)
    else:
        raise Ec2Error("MissingParameter", "the request must contain InstanceId or "
                       "NetworkInterfaceId")
    if p.get("PrivateIpAddress"):
        own = _interface_addresses(ctx, interface) if interface else \
            ctx.core.ops.instances.get_instance(instance or "").addresses
        if p["PrivateIpAddress"] not in own:
            raise Ec2Error("UnsupportedOperation", "PrivateIpAddress: an address reaches an "
                           "address of the instance or interface only")
    reassociate = str(p.get("AllowReassociation", "false")).lower() == "true"
    try:
        done = ctx.core.addresses.associate(a.id, instance=instance, interface=interface,
                                            reassociate=reassociate)
    except Conflict as exc:
        raise Ec2Error("Resource.AlreadyAssociated",
                       f"{exc.detail} (AllowReassociation=true moves it)") from exc
    return {"associationId": done.association}


def _eni_target(ctx: Context, eni: str) -> tuple[str | None, str | None]:
    """(instance, interface) an address associated with `eni` points at: an instance's own
    interface is the instance; one made by CreateNetworkInterface is itself, attached or not
    (the address reaches its instance while it is attached)."""
    from .interfaces import attached_instance, is_record
    if is_record(ctx, eni):
        return None, eni
    instance = attached_instance(ctx, eni)
    if instance is None:
        raise Ec2Error("InvalidNetworkInterfaceID.NotFound", f"the networkInterface ID "
                       f"'{eni}' does not exist")
    return instance, None


def _interface_addresses(ctx: Context, eni: str) -> list[str]:
    from .interfaces import any_interface
    return [x["privateIpAddress"] for x in any_interface(ctx, eni)["privateIpAddressesSet"]]


@action(WRITE)
def DisassociateAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    if assoc := p.get("AssociationId"):
        found = [a for a in ctx.core.addresses.find() if a.association == assoc]
        if not found:
            raise Ec2Error("InvalidAssociationID.NotFound",
                           f"the association ID '{assoc}' does not exist")
        a = found[0]
    elif p.get("PublicIp"):
        raise Ec2Error("InvalidParameterValue", "a VPC address is disassociated by its "
                       "AssociationId, not its PublicIp")
    else:
        raise Ec2Error("MissingParameter", "the request must contain PublicIp or AssociationId")
    ctx.core.addresses.disassociate(a.id)
    return {"return": True}


@action(WRITE)
def ReleaseAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """By AllocationId, as EC2 has it for VPC addresses (which all of onepane's are)."""
    if p.get("PublicIp") and p.get("AllocationId"):
        raise Ec2Error("InvalidParameterCombination", "give AllocationId or PublicIp, not both")
    if ip := p.get("PublicIp"):
        _release_by_ip(ctx, ip)
    a = _allocation(ctx, p)
    try:
        ctx.core.addresses.release(a.id)
    except Conflict as exc:
        raise Ec2Error("InvalidIPAddress.InUse", exc.detail) from exc
    ctx.core.annotations.forget(a.id)
    return {"return": True}


def _release_by_ip(ctx: Context, ip: str) -> None:
    """EC2's answers to a release by PublicIp, which only EC2-Classic addresses take: a
    malformed address is a bad value, one of the caller's VPC addresses is named by its
    AllocationId, and an address the caller does not hold is not theirs to release."""
    try:
        ipaddress.IPv4Address(ip)
    except ValueError as exc:
        raise Ec2Error("InvalidParameterValue", f"PublicIp {ip!r} is not an IPv4 address") \
            from exc
    try:
        ctx.core.addresses.by_ip(ip)
    except NotFound as exc:
        raise Ec2Error("AuthFailure", f"the address {ip} does not belong to you") from exc
    raise Ec2Error("InvalidParameterValue", "a VPC address is released by its AllocationId, "
                   "not its PublicIp")


@action(READ_ONLY)
def DescribeInstanceTypes(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Every location's sizes, one entry per name (the largest a name means anywhere)."""
    types: dict[str, dict[str, Any]] = {}
    for loc in ctx.core.locations.list():
        try:
            sizes = ctx.core.registry.run(loc.name, lambda pr: pr.list_sizes(), timeout=10)
        except Exception:  # an unreachable location offers nothing now; the rest still do
            continue
        for s in sizes:
            cpus = max(1, round(s.cpu or 1))
            types.setdefault(s.provider_id, {
                "instanceType": s.provider_id, "currentGeneration": True,
                "supportedUsageClasses": ["on-demand"], "supportedRootDeviceTypes": ["ebs"],
                "bareMetal": False, "hypervisor": "kvm",
                "processorInfo": {"supportedArchitectures": ["x86_64"]},
                "vCpuInfo": {"defaultVCpus": cpus, "defaultCores": cpus,
                             "defaultThreadsPerCore": 1},
                "memoryInfo": {"sizeInMiB": s.memory_mb or 0},
                "instanceStorageSupported": False,
                "networkInfo": {"maximumNetworkInterfaces": 1, "ipv6Supported": False}})
    wanted = members(p, "InstanceType")
    if unknown := set(wanted) - set(types):
        raise Ec2Error("InvalidInstanceType", f"the instance type {sorted(unknown)[0]!r} does "
                       f"not exist; onepane's locations offer {', '.join(sorted(types))}")
    flt = TYPE_FILTERS.parse(p)
    return {"instanceTypeSet": TYPE_FILTERS.apply(
        flt, [t for n, t in sorted(types.items()) if not wanted or n in wanted])}


TYPE_FILTERS = FilterTable({"instance-type": key("instanceType")})
STATUS_FILTERS = FilterTable({
    "availability-zone": key("availabilityZone"),
    "instance-state-name": lambda item: item["instanceState"]["name"],
    "instance-status.status": lambda item: item["instanceStatus"]["status"]})


@action(READ_ONLY)
def DescribeInstanceStatus(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    ids = members(p, "InstanceId")
    every_state = str(p.get("IncludeAllInstances", "false")).lower() == "true"
    insts = [_instance(ctx, i) for i in ids] if ids else list(every(ctx.core.ops.instances.list_instances))
    flt = STATUS_FILTERS.parse(p)
    out = []
    for inst in insts:
        running = inst.state == InstanceState.running
        if not (running or every_state):
            continue
        status = "ok" if running else ("impaired" if inst.state == InstanceState.error
                                       else "not-applicable")
        item: dict[str, Any] = {"instanceId": shapes.instance_id(inst.id), "availabilityZone": inst.location,
                "instanceState": shapes.state_of(inst),
                "systemStatus": {"status": status, "details": [
                    {"name": "reachability", "status": "passed" if running else status}]},
                "instanceStatus": {"status": status, "details": [
                    {"name": "reachability", "status": "passed" if running else status}]}}
        if STATUS_FILTERS.keep(flt, item):
            out.append(item)
    return {"instanceStatusSet": out}
