"""Internet gateways, route tables and DHCP option sets of EC2 VPCs: kept as records, so that
tools which make them work, with EC2's rules for them (one gateway per VPC, one main table,
no deleting what is in use). They route nothing in onepane: a subnet's traffic is its
location's, and the README says so."""

from __future__ import annotations

import ipaddress
from typing import Any

from ...inventory.records import Record, record_id
from . import shapes
from .actions import READ_ONLY, WRITE, Context, _tag_specs, action, other_tags, tags_at_create
from .filtering import FilterTable, each, key, tag_set
from .vpc import VPC, _vpc_of
from .wire import Ec2Error, members, required

IGW, RTB, DOPT = "igw", "rtb", "dopt"


def _vpc_record(ctx: Context, vpc_id: str) -> Record:
    try:
        return ctx.core.records.get(VPC, vpc_id, "vpc")
    except Exception as exc:
        raise Ec2Error("InvalidVpcID.NotFound", f"the vpc ID '{vpc_id}' does not exist") from exc


def make_main_table(ctx: Context, vpc_id: str, cidr: str) -> None:
    """Every VPC has a main route table with its local route (CreateVpc calls this)."""
    ctx.core.records.add(RTB, "rtb", {"vpc": vpc_id, "main": True,
                                      "routes": [_local(cidr)],
                                      "associations": [{"id": record_id("rtbassoc"),
                                                        "main": True, "subnet": None}]})


def _local(cidr: str) -> dict[str, Any]:
    return {"DestinationCidrBlock": cidr, "GatewayId": "local", "State": "active",
            "Origin": "CreateRouteTable"}


# ---- internet gateways ------------------------------------------------------------------------

def _igw(r: Record, ctx: Context) -> dict[str, Any]:
    vpc = r.attributes.get("vpc")
    return {"internetGatewayId": r.id, "ownerId": shapes.OWNER,
            "attachmentSet": [{"vpcId": vpc, "state": "available"}] if vpc else [],
            "tagSet": shapes.tag_set(other_tags(ctx, r.id))}


@action(WRITE)
def CreateInternetGateway(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    tags = _tag_specs(p, "internet-gateway")  # checked before anything is made
    r = ctx.core.records.add(IGW, "igw", {"vpc": None})
    tags_at_create(ctx, p, "internet-gateway", "other", r.id, tags)
    return {"internetGateway": _igw(r, ctx)}


@action(WRITE)
def DeleteInternetGateway(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = ctx.core.records.get(IGW, required(p, "InternetGatewayId"), "internet gateway")
    if r.attributes.get("vpc"):
        raise Ec2Error("DependencyViolation", f"{r.id} is attached to {r.attributes['vpc']}")
    ctx.core.records.delete(r.id)
    return {"return": True}


@action(READ_ONLY)
def DescribeInternetGateways(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = IGW_FILTERS.parse(p)
    gws = ctx.core.records.find(IGW, members(p, "InternetGatewayId") or None, "internet gateway")
    return {"internetGatewaySet": IGW_FILTERS.apply(flt, (_igw(r, ctx) for r in gws))}


IGW_FILTERS = FilterTable({"internet-gateway-id": key("internetGatewayId"),
                           "attachment.vpc-id": each("attachmentSet", "vpcId"),
                           "attachment.state": each("attachmentSet", "state")}, tags=tag_set)


@action(WRITE)
def AttachInternetGateway(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = ctx.core.records.get(IGW, required(p, "InternetGatewayId"), "internet gateway")
    vpc = _vpc_record(ctx, required(p, "VpcId"))
    if r.attributes.get("vpc"):
        raise Ec2Error("Resource.AlreadyAssociated", f"{r.id} is attached to "
                       f"{r.attributes['vpc']}")
    if any(g.attributes.get("vpc") == vpc.id for g in ctx.core.records.find(IGW)):
        raise Ec2Error("Resource.AlreadyAssociated", f"{vpc.id} has an internet gateway")
    ctx.core.records.update(r.id, vpc=vpc.id)
    return {"return": True}


@action(WRITE)
def DetachInternetGateway(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = ctx.core.records.get(IGW, required(p, "InternetGatewayId"), "internet gateway")
    vpc = required(p, "VpcId")
    if r.attributes.get("vpc") != vpc:
        raise Ec2Error("Gateway.NotAttached", f"{r.id} is not attached to {vpc}")
    ctx.core.records.update(r.id, vpc=None)
    return {"return": True}


# ---- route tables -----------------------------------------------------------------------------

def _rtb(r: Record, ctx: Context) -> dict[str, Any]:
    a = r.attributes
    return {"routeTableId": r.id, "vpcId": a["vpc"], "ownerId": shapes.OWNER,
            "routeSet": [{"destinationCidrBlock": x["DestinationCidrBlock"],
                          "gatewayId": x.get("GatewayId"), "instanceId": x.get("InstanceId"),
                          "networkInterfaceId": x.get("NetworkInterfaceId"),
                          "natGatewayId": x.get("NatGatewayId"),
                          "vpcPeeringConnectionId": x.get("VpcPeeringConnectionId"),
                          "state": x["State"], "origin": x["Origin"]} for x in a["routes"]],
            "associationSet": [{"routeTableAssociationId": s["id"], "routeTableId": r.id,
                                "subnetId": s.get("subnet"), "main": s["main"],
                                "associationState": {"state": "associated"}}
                               for s in a["associations"]],
            "propagatingVgwSet": [], "tagSet": shapes.tag_set(other_tags(ctx, r.id))}


def _table(ctx: Context, rid: str) -> Record:
    return ctx.core.records.get(RTB, rid, "route table")


@action(WRITE)
def CreateRouteTable(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vpc = _vpc_record(ctx, required(p, "VpcId"))
    tags = _tag_specs(p, "route-table")  # checked before anything is made
    r = ctx.core.records.add(RTB, "rtb", {"vpc": vpc.id, "main": False,
                                          "routes": [_local(vpc.attributes["cidr"])],
                                          "associations": []})
    tags_at_create(ctx, p, "route-table", "other", r.id, tags)
    return {"routeTable": _rtb(r, ctx)}


@action(WRITE)
def DeleteRouteTable(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _table(ctx, required(p, "RouteTableId"))
    if r.attributes["associations"]:
        raise Ec2Error("DependencyViolation", f"{r.id} is associated; disassociate it first")
    ctx.core.records.delete(r.id)
    return {"return": True}


@action(READ_ONLY)
def DescribeRouteTables(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = RTB_FILTERS.parse(p)
    rtbs = ctx.core.records.find(RTB, members(p, "RouteTableId") or None, "route table")
    return {"routeTableSet": RTB_FILTERS.apply(flt, (_rtb(r, ctx) for r in rtbs))}


RTB_FILTERS = FilterTable({
    "route-table-id": key("routeTableId"), "vpc-id": key("vpcId"),
    "association.route-table-association-id": each("associationSet", "routeTableAssociationId"),
    "association.route-table-id": each("associationSet", "routeTableId"),
    "association.subnet-id": each("associationSet", "subnetId"),
    "association.main": lambda item: [str(a["main"]).lower() for a in item["associationSet"]],
    "route.destination-cidr-block": each("routeSet", "destinationCidrBlock"),
    "route.gateway-id": each("routeSet", "gatewayId"),
    "route.state": each("routeSet", "state")}, tags=tag_set)


def _subnet_vpc(ctx: Context, subnet_id: str) -> str:
    net = ctx.core.ops.networks.get_network(shapes.to_onepane(subnet_id, "subnet"))
    return _vpc_of(ctx, net)


@action(WRITE)
def AssociateRouteTable(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _table(ctx, required(p, "RouteTableId"))
    subnet = required(p, "SubnetId")
    if _subnet_vpc(ctx, subnet) != r.attributes["vpc"]:
        raise Ec2Error("InvalidParameterValue", f"{subnet} is not in {r.attributes['vpc']}")
    for other in ctx.core.records.find(RTB):
        if any(s.get("subnet") == subnet for s in other.attributes["associations"]):
            raise Ec2Error("Resource.AlreadyAssociated", f"{subnet} is associated with "
                           f"{other.id}")
    assoc = {"id": record_id("rtbassoc"), "main": False, "subnet": subnet}
    ctx.core.records.update(r.id, associations=[*r.attributes["associations"], assoc])
    return {"associationId": assoc["id"]}


def _find_association(ctx: Context, assoc_id: str) -> tuple[Record, dict[str, Any]]:
    for r in ctx.core.records.find(RTB):
        for s in r.attributes["associations"]:
            if s["id"] == assoc_id:
                return r, s
    raise Ec2Error("InvalidAssociationID.NotFound", f"the association ID '{assoc_id}' does not "
                   "exist")


@action(WRITE)
def DisassociateRouteTable(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r, s = _find_association(ctx, required(p, "AssociationId"))
    if s["main"]:
        raise Ec2Error("InvalidParameterValue", "the main association cannot be removed; "
                       "replace it")
    ctx.core.records.update(r.id, associations=[x for x in r.attributes["associations"]
                                                if x["id"] != s["id"]])
    return {"return": True}


@action(WRITE)
def ReplaceRouteTableAssociation(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    old, s = _find_association(ctx, required(p, "AssociationId"))
    new = _table(ctx, required(p, "RouteTableId"))
    if new.attributes["vpc"] != old.attributes["vpc"]:
        raise Ec2Error("InvalidParameterValue", f"{new.id} is in another vpc")
    ctx.core.records.update(old.id, associations=[x for x in old.attributes["associations"]
                                                  if x["id"] != s["id"]],
                            main=False if s["main"] else old.attributes.get("main"))
    moved = {**s, "id": record_id("rtbassoc")}
    new = _table(ctx, new.id)
    ctx.core.records.update(new.id, associations=[*new.attributes["associations"], moved],
                            main=True if s["main"] else new.attributes.get("main"))
    return {"newAssociationId": moved["id"]}


def _route_args(ctx: Context, p: dict[str, Any]) -> tuple[Record, str, dict[str, Any]]:
    r = _table(ctx, required(p, "RouteTableId"))
    dest = required(p, "DestinationCidrBlock")
    try:
        ipaddress.ip_network(dest, strict=False)
    except ValueError as exc:
        raise Ec2Error("InvalidParameterValue", f"{dest!r} is not a CIDR block") from exc
    target = {k: p[k] for k in ("GatewayId", "InstanceId", "NetworkInterfaceId",
                                "VpcPeeringConnectionId", "NatGatewayId") if p.get(k)}
    return r, dest, target


def _check_target(ctx: Context, r: Record, target: dict[str, Any]) -> None:
    if len(target) != 1:
        raise Ec2Error("InvalidParameterCombination" if target else "MissingParameter",
                       "give exactly one target (GatewayId, InstanceId, ...)")
    if eni := target.get("NetworkInterfaceId"):
        from .interfaces import any_interface
        any_interface(ctx, eni)  # InvalidNetworkInterfaceID.NotFound when there is none
    gw = target.get("GatewayId")
    if gw:
        g = ctx.core.records.get(IGW, gw, "internet gateway")
        if g.attributes.get("vpc") != r.attributes["vpc"]:
            raise Ec2Error("InvalidParameterValue", f"{gw} is not attached to "
                           f"{r.attributes['vpc']}")


@action(WRITE)
def CreateRoute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r, dest, target = _route_args(ctx, p)
    _check_target(ctx, r, target)
    same = [x for x in r.attributes["routes"] if x["DestinationCidrBlock"] == dest]
    if same and same[0].get("GatewayId") == "local":
        raise Ec2Error("InvalidParameterValue", f"{dest} is the VPC's own block: its local "
                       "route cannot be replaced")
    if same:
        raise Ec2Error("RouteAlreadyExists", f"{r.id} has a route to {dest}")
    route = {"DestinationCidrBlock": dest, **target, "State": "active", "Origin": "CreateRoute"}
    ctx.core.records.update(r.id, routes=[*r.attributes["routes"], route])
    return {"return": True}


@action(WRITE)
def ReplaceRoute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r, dest, target = _route_args(ctx, p)
    _check_target(ctx, r, target)
    routes = r.attributes["routes"]
    if not any(x["DestinationCidrBlock"] == dest and x.get("GatewayId") != "local"
               for x in routes):
        raise Ec2Error("InvalidRoute.NotFound", f"{r.id} has no route to {dest}")
    ctx.core.records.update(r.id, routes=[
        {"DestinationCidrBlock": dest, **target, "State": "active", "Origin": "CreateRoute"}
        if x["DestinationCidrBlock"] == dest else x for x in routes])
    return {"return": True}


@action(WRITE)
def DeleteRoute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = _table(ctx, required(p, "RouteTableId"))
    dest = required(p, "DestinationCidrBlock")
    routes = r.attributes["routes"]
    match = [x for x in routes if x["DestinationCidrBlock"] == dest]
    if not match:
        raise Ec2Error("InvalidRoute.NotFound", f"{r.id} has no route to {dest}")
    if match[0].get("GatewayId") == "local":
        raise Ec2Error("InvalidParameterValue", "the local route cannot be deleted")
    ctx.core.records.update(r.id, routes=[x for x in routes if x["DestinationCidrBlock"] != dest])
    return {"return": True}


# ---- DHCP options -----------------------------------------------------------------------------

DHCP_KEYS = {"domain-name", "domain-name-servers", "ntp-servers", "netbios-name-servers",
             "netbios-node-type"}


def _dopt(r: Record, ctx: Context) -> dict[str, Any]:
    return {"dhcpOptionsId": r.id, "ownerId": shapes.OWNER,
            "dhcpConfigurationSet": [{"key": k, "valueSet": [{"value": v} for v in vs]}
                                     for k, vs in r.attributes["config"].items()],
            "tagSet": shapes.tag_set(other_tags(ctx, r.id))}


@action(WRITE)
def CreateDhcpOptions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, list[str]] = {}
    for c in members(p, "DhcpConfiguration"):
        key = c.get("Key", "")
        values = members(c, "Value")
        if key not in DHCP_KEYS:
            raise Ec2Error("InvalidParameterValue", f"unknown DHCP option {key!r}; use "
                           f"{', '.join(sorted(DHCP_KEYS))}")
        if not values:
            raise Ec2Error("InvalidParameterValue", f"DHCP option {key} needs a value")
        config[key] = list(values)
    if not config:
        raise Ec2Error("MissingParameter", "the request must contain DhcpConfiguration")
    tags = _tag_specs(p, "dhcp-options")  # checked before anything is made
    r = ctx.core.records.add(DOPT, "dopt", {"config": config})
    tags_at_create(ctx, p, "dhcp-options", "other", r.id, tags)
    return {"dhcpOptions": _dopt(r, ctx)}


@action(WRITE)
def DeleteDhcpOptions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = ctx.core.records.get(DOPT, required(p, "DhcpOptionsId"), "DHCP options")
    if any(v.attributes.get("dhcp") == r.id for v in ctx.core.records.find(VPC)):
        raise Ec2Error("DependencyViolation", f"{r.id} is associated with a vpc")
    ctx.core.records.delete(r.id)
    return {"return": True}


@action(READ_ONLY)
def DescribeDhcpOptions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = DOPT_FILTERS.parse(p)
    dopts = ctx.core.records.find(DOPT, members(p, "DhcpOptionsId") or None, "DHCP options")
    return {"dhcpOptionsSet": DOPT_FILTERS.apply(flt, (_dopt(r, ctx) for r in dopts))}


DOPT_FILTERS = FilterTable({
    "dhcp-options-id": key("dhcpOptionsId"), "key": each("dhcpConfigurationSet", "key"),
    "value": lambda item: [v["value"] for c in item["dhcpConfigurationSet"]
                           for v in c["valueSet"]]}, tags=tag_set)


@action(WRITE)
def AssociateDhcpOptions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    dopt = required(p, "DhcpOptionsId")
    vpc = _vpc_record(ctx, required(p, "VpcId"))
    if dopt != "default":
        ctx.core.records.get(DOPT, dopt, "DHCP options")
    ctx.core.records.update(vpc.id, dhcp=None if dopt == "default" else dopt)
    return {"return": True}

