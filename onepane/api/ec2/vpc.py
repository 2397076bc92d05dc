"""VPCs and subnets. A subnet is a onepane network at the subnet's zone (location); a VPC is
the address plan its subnets come from, kept as a record. A onepane network made outside EC2
shows as a VPC of its own with one subnet, as before VPCs could be made here."""

from __future__ import annotations

import ipaddress
from typing import Any

from ...inventory.paging import every
from ...model import Network, NetworkCreate
from . import shapes
from .actions import (
    READ_ONLY,
    WRITE,
    Context,
    _tag_specs,
    action,
    tags_at_create,
)
from .filtering import FilterTable, constant, key, tag_set
from .interfaces import free_count
from .settle import settle
from .wire import Ec2Error, members, required

VPC = "vpc"


def _cidr(raw: str, low: int, high: int, code: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        raise Ec2Error("InvalidParameterValue", f"{raw!r} is not a CIDR block") from exc
    if not isinstance(net, ipaddress.IPv4Network) or not low <= net.prefixlen <= high:
        raise Ec2Error(code, f"the CIDR {raw!r} is invalid: use a /{low} to /{high} IPv4 block")
    return net


def _vpc_of(ctx: Context, net: Network) -> str:
    vpc = ctx.core.annotations.get(net.id).attributes.get("ec2.vpc")
    return str(vpc) if vpc else "vpc-" + net.id.split("-", 1)[1]


def _vpc_shape(vid: str, cidr: str, tags: dict[str, str], dhcp: str = "default"
               ) -> dict[str, Any]:
    return {"vpcId": vid, "ownerId": shapes.OWNER, "state": "available", "cidrBlock": cidr,
            "dhcpOptionsId": dhcp, "instanceTenancy": "default", "isDefault": False,
            "cidrBlockAssociationSet": [{"associationId": vid.replace("vpc-", "vpc-cidr-assoc-"),
                                         "cidrBlock": cidr,
                                         "cidrBlockState": {"state": "associated"}}],
            "tagSet": shapes.tag_set(tags)}


def all_vpcs(ctx: Context) -> list[dict[str, Any]]:
    from .actions import other_tags
    made = [_vpc_shape(r.id, r.attributes["cidr"], other_tags(ctx, r.id),
                       r.attributes.get("dhcp") or "default") for r in ctx.core.records.find(VPC)]
    own = [_vpc_shape("vpc-" + n.id.split("-", 1)[1], n.cidr or "", {"Name": n.name})
           for n in every(ctx.core.ops.networks.list_networks)
           if not ctx.core.annotations.get(n.id).attributes.get("ec2.vpc")]
    return made + own


@action(WRITE)
def CreateVpc(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    cidr = _cidr(required(p, "CidrBlock"), 16, 28, "InvalidVpc.Range")
    if p.get("InstanceTenancy", "default") != "default":
        raise Ec2Error("UnsupportedOperation", "onepane has no dedicated tenancy")
    tags = _tag_specs(p, "vpc")  # checked before anything is made
    rec = ctx.core.records.add(VPC, "vpc", {"cidr": str(cidr)})
    ctx.core.security_groups.default(rec.id)
    from .routing import make_main_table
    make_main_table(ctx, rec.id, str(cidr))
    tags_at_create(ctx, p, "vpc", "other", rec.id, tags)
    return {"vpc": _vpc_shape(rec.id, str(cidr), tags)}


@action(WRITE)
def DeleteVpc(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vid = required(p, "VpcId")
    ctx.core.records.get(VPC, vid, "vpc")
    if any(_vpc_of(ctx, n) == vid for n in every(ctx.core.ops.networks.list_networks)):
        raise Ec2Error("DependencyViolation", f"the vpc {vid!r} has subnets; delete them first")
    for g in ctx.core.security_groups.find():
        if g.network == vid and g.name != "default":
            raise Ec2Error("DependencyViolation", f"the vpc {vid!r} has security group {g.id}")
    for kind in ("igw", "rtb"):
        for r in ctx.core.records.find(kind):
            if r.attributes.get("vpc") == vid and not r.attributes.get("main"):
                raise Ec2Error("DependencyViolation", f"the vpc {vid!r} has {r.id}")
    ctx.core.security_groups.drop_network(vid)
    for r in ctx.core.records.find("rtb"):
        if r.attributes.get("vpc") == vid:
            ctx.core.records.delete(r.id)
    ctx.core.records.delete(vid)
    return {"return": True}


@action(READ_ONLY)
def DescribeVpcs(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = VPC_FILTERS.parse(p)
    vpcs = all_vpcs(ctx)
    ids = members(p, "VpcId")
    if missing := set(ids) - {v["vpcId"] for v in vpcs}:
        raise Ec2Error("InvalidVpcID.NotFound", f"the vpc ID '{sorted(missing)[0]}' does not "
                       "exist")
    return {"vpcSet": VPC_FILTERS.apply(flt, (v for v in vpcs if not ids or v["vpcId"] in ids))}


VPC_FILTERS = FilterTable({
    "vpc-id": key("vpcId"), "cidr": key("cidrBlock"), "cidr-block": key("cidrBlock"),
    "state": key("state"), "is-default": constant("false"),
    "dhcp-options-id": key("dhcpOptionsId")}, tags=tag_set)


@action(READ_ONLY)
def DescribeVpcAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vid = required(p, "VpcId")
    if vid not in {v["vpcId"] for v in all_vpcs(ctx)}:
        raise Ec2Error("InvalidVpcID.NotFound", f"the vpc ID '{vid}' does not exist")
    name = p.get("Attribute")
    if name not in VPC_DNS:
        raise Ec2Error("InvalidParameterValue", "Attribute is enableDnsSupport or "
                       "enableDnsHostnames")
    value = ctx.core.annotations.get(vid).attributes.get(f"ec2.{name}", VPC_DNS[name])
    return {"vpcId": vid, name: {"value": bool(value)}}


VPC_DNS = {"enableDnsSupport": True, "enableDnsHostnames": False}  # EC2's defaults


@action(WRITE)
def ModifyVpcAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """The VPC's DNS settings, kept as EC2 keeps them (what Ansible's ec2_vpc_net sets on
    every run); onepane's own DNS does not depend on them."""
    from .actions import set_ec2_notes
    vid = required(p, "VpcId")
    if vid not in {v["vpcId"] for v in all_vpcs(ctx)}:
        raise Ec2Error("InvalidVpcID.NotFound", f"the vpc ID '{vid}' does not exist")
    given = {name: _flag(p, name[0].upper() + name[1:]) for name in VPC_DNS}
    given = {k: v for k, v in given.items() if v is not None}
    if len(given) != 1:
        raise Ec2Error("InvalidParameterCombination", "change exactly one of EnableDnsSupport "
                       "and EnableDnsHostnames a call")
    set_ec2_notes(ctx, vid, **given)
    return {"return": True}


def _flag(p: dict[str, Any], name: str) -> bool | None:
    """`Name.Value=true|false` (EC2's AttributeBooleanValue), or None when not given."""
    body = p.get(name)
    if body is None:
        return None
    value = str(body.get("Value") if isinstance(body, dict) else body).lower()
    if value not in ("true", "false"):
        raise Ec2Error("InvalidParameterValue", f"{name}.Value is true or false")
    return value == "true"


# ---- subnets ----------------------------------------------------------------------------------

def _subnet_shape(ctx: Context, net: Network) -> dict[str, Any]:
    body = shapes.subnet(net)
    body["vpcId"] = _vpc_of(ctx, net)
    notes = ctx.core.annotations.get(body["subnetId"]).attributes
    body["mapPublicIpOnLaunch"] = bool(notes.get("ec2.mapPublicIpOnLaunch", False))
    tags = ctx.core.annotations.get(body["subnetId"]).attributes.get("ec2.tags")
    body["tagSet"] = shapes.tag_set(dict(tags or {"Name": net.name}))
    # as EC2: the block without network, broadcast and 3 reserved, and without what
    # interfaces hold
    body["availableIpAddressCount"] = free_count(ctx, net)
    return body


@action(WRITE)
def CreateSubnet(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vid = required(p, "VpcId")
    vpc = ctx.core.records.get(VPC, vid, "vpc")
    cidr = _cidr(required(p, "CidrBlock"), 16, 28, "InvalidSubnet.Range")
    if not cidr.subnet_of(ipaddress.ip_network(vpc.attributes["cidr"])):  # type: ignore[arg-type]
        raise Ec2Error("InvalidSubnet.Range", f"the CIDR {cidr} is not within the vpc's "
                       f"{vpc.attributes['cidr']}")
    for n in every(ctx.core.ops.networks.list_networks):
        if _vpc_of(ctx, n) == vid and n.cidr and ipaddress.ip_network(n.cidr).overlaps(cidr):
            raise Ec2Error("InvalidSubnet.Conflict", f"the CIDR {cidr} conflicts with subnet "
                           f"subnet-{n.id.split('-', 1)[1]}")
    zone = p.get("AvailabilityZone") or ctx.core.locations.default()
    tags = _tag_specs(p, "subnet")  # checked before anything is made
    job = ctx.core.ops.networks.create_network(NetworkCreate(
        name=f"subnet-{str(cidr.network_address).replace('.', '-')}-{cidr.prefixlen}",
        location=zone, cidr=str(cidr)))
    ctx.core.annotations.put(job.target or "", {"ec2.vpc": vid}, [])
    settle(ctx.core, [job.id])  # usually available by now: an instance may be launched in it
    net = ctx.core.ops.networks.get_network(job.target or "")
    tags_at_create(ctx, p, "subnet", "other", f"subnet-{net.id.split('-', 1)[1]}", tags)
    return {"subnet": _subnet_shape(ctx, net)}


@action(WRITE)
def DeleteSubnet(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    net = ctx.core.ops.networks.get_network(shapes.to_onepane(required(p, "SubnetId"), "subnet"))
    if held := [r.id for r in ctx.core.records.find("eni") if r.attributes["subnet"] == net.id]:
        raise Ec2Error("DependencyViolation", f"subnet {p['SubnetId']} has network interfaces "
                       f"({', '.join(held)}); delete them first")
    try:
        ctx.core.ops.networks.delete_network(net.id)
    except Exception as exc:
        if "instances" in str(exc):
            raise Ec2Error("DependencyViolation", str(exc)) from exc
        raise
    ctx.core.annotations.forget(net.id)
    return {"return": True}


@action(READ_ONLY)
def DescribeSubnets(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = SUBNET_FILTERS.parse(p)
    ids = {shapes.to_onepane(v, "subnet") for v in members(p, "SubnetId")}
    nets = [n for n in every(ctx.core.ops.networks.list_networks) if not ids or n.id in ids]
    if missing := ids - {n.id for n in nets}:
        raise Ec2Error("InvalidSubnetID.NotFound", f"the subnet ID 'subnet-"
                       f"{sorted(missing)[0][4:]}' does not exist")
    return {"subnetSet": SUBNET_FILTERS.apply(flt, (_subnet_shape(ctx, n) for n in nets))}


SUBNET_FILTERS = FilterTable({
    "subnet-id": key("subnetId"), "vpc-id": key("vpcId"),
    "availability-zone": key("availabilityZone"), "cidr-block": key("cidrBlock"),
    "cidr": key("cidrBlock"), "cidrBlock": key("cidrBlock"), "state": key("state")},
    tags=tag_set)


@action(WRITE)
def ModifySubnetAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """MapPublicIpOnLaunch is kept (a location gives its instances the addresses it gives);
    IPv6 is refused by name: onepane's networks have none."""
    from .actions import set_ec2_notes
    sid = required(p, "SubnetId")
    if not any(s["subnetId"] == sid for s in DescribeSubnets(ctx, {})["subnetSet"]):
        raise Ec2Error("InvalidSubnetID.NotFound", f"the subnet ID '{sid}' does not exist")
    public = _flag(p, "MapPublicIpOnLaunch")
    v6 = _flag(p, "AssignIpv6AddressOnCreation")
    others = [k for k in ("EnableDns64", "MapCustomerOwnedIpOnLaunch", "EnableLniAtDeviceIndex",
                          "PrivateDnsHostnameTypeOnLaunch") if k in p]
    if (public is not None) + (v6 is not None) + len(others) != 1:
        raise Ec2Error("InvalidParameterCombination", "change exactly one attribute a call")
    if v6 or others:
        raise Ec2Error("UnsupportedOperation", f"{others[0] if others else 'IPv6'}: onepane's "
                       "networks have no IPv6 and no such setting")
    if public is not None:
        set_ec2_notes(ctx, sid, mapPublicIpOnLaunch=public)
    return {"return": True}
