"""What EC2 tools ask before anything else: the account's platforms and limits, public
addresses (onepane's locations hand out none), instance types, and the state of instances."""

from __future__ import annotations

from typing import Any

from ...inventory.paging import every
from ...model import InstanceState
from . import shapes
from .actions import READ_ONLY, WRITE, Context, _instance, action
from .filtering import FilterTable, key
from .wire import Ec2Error, members

NO_PUBLIC = ("no onepane location hands out public (elastic) addresses: instances have their "
             "location's addresses only")


@action(READ_ONLY)
def DescribeAccountAttributes(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """onepane is a VPC-only account with no default VPC: a network is a VPC with one subnet,
    and an instance without one lives in its location's own network."""
    attrs = {"supported-platforms": ["VPC"], "default-vpc": ["none"],
             "max-instances": ["10000"], "max-elastic-ips": ["0"], "vpc-max-elastic-ips": ["0"],
             "vpc-max-security-groups-per-interface": ["5"]}
    wanted = members(p, "AttributeName")
    if unknown := set(wanted) - set(attrs):
        raise Ec2Error("InvalidParameterValue", f"unknown account attribute "
                       f"{sorted(unknown)[0]!r}; onepane has {', '.join(attrs)}")
    return {"accountAttributeSet": [
        {"attributeName": k, "attributeValueSet": [{"attributeValue": v} for v in vs]}
        for k, vs in attrs.items() if not wanted or k in wanted]}


@action(READ_ONLY)
def DescribeAddresses(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    for ip in members(p, "PublicIp"):
        raise Ec2Error("InvalidAddress.NotFound", f"address {ip} not found: {NO_PUBLIC}")
    for alloc in members(p, "AllocationId"):
        raise Ec2Error("InvalidAllocationID.NotFound", f"allocation {alloc} not found: "
                       f"{NO_PUBLIC}")
    return {"addressesSet": []}


@action(WRITE)
def AllocateAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    domain = p.get("Domain", "vpc")
    if domain not in ("vpc", "standard"):
        raise Ec2Error("InvalidParameterValue", f"Domain {domain!r}: use vpc")
    raise Ec2Error("AddressLimitExceeded", NO_PUBLIC)


@action(WRITE)
def AssociateAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    if not (p.get("PublicIp") or p.get("AllocationId")):
        raise Ec2Error("MissingParameter", "the request must contain PublicIp or AllocationId")
    raise Ec2Error("InvalidAddress.NotFound", NO_PUBLIC)


@action(WRITE)
def DisassociateAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    if not (p.get("PublicIp") or p.get("AssociationId")):
        raise Ec2Error("MissingParameter", "the request must contain PublicIp or AssociationId")
    raise Ec2Error("InvalidAssociationID.NotFound", NO_PUBLIC)


@action(WRITE)
def ReleaseAddress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    if not (p.get("PublicIp") or p.get("AllocationId")):
        raise Ec2Error("MissingParameter", "the request must contain PublicIp or AllocationId")
    raise Ec2Error("InvalidAllocationID.NotFound", NO_PUBLIC)


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
