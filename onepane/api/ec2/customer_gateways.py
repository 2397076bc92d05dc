"""Customer gateways: the operator's side of a site-to-site VPN as EC2 describes it (its public
address, its BGP ASN, the VPN type). Kept as records, with EC2's rules for them, so that tools
which make, tag and list them work (Terraform's `aws_customer_gateway`); onepane makes no VPN
connection to them (it has no VPN gateway), and the README says so."""

from __future__ import annotations

import ipaddress
from typing import Any

from ...inventory.records import Record
from . import shapes
from .actions import READ_ONLY, WRITE, Context, _tag_specs, action, other_tags, tags_at_create
from .filtering import FilterTable, constant, key, tag_set
from .wire import Ec2Error, integer, members, required

CGW = "cgw"
TYPES = ("ipsec.1",)  # the only type EC2 has
DEFAULT_ASN = 65000  # EC2's, when none is given


def _cgw(r: Record, ctx: Context) -> dict[str, Any]:
    a = r.attributes
    return {"customerGatewayId": r.id, "state": "available", "type": a["type"],
            "ipAddress": a["ip"], "bgpAsn": str(a["asn"]), "deviceName": a.get("device"),
            "tagSet": shapes.tag_set(other_tags(ctx, r.id))}


def _address(p: dict[str, Any]) -> str:
    """IpAddress, or PublicIp as older clients (and the plugin) send it: one IPv4 address."""
    value = p.get("IpAddress") or p.get("PublicIp")
    if not value:
        raise Ec2Error("MissingParameter", "the request must contain the parameter IpAddress")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise Ec2Error("InvalidParameterValue", f"IpAddress {value!r} is not an IPv4 "
                       "address") from exc


@action(WRITE)
def CreateCustomerGateway(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    kind = required(p, "Type")
    if kind not in TYPES:
        raise Ec2Error("InvalidParameterValue", f"Type {kind!r}: use {', '.join(TYPES)}")
    ip = _address(p)
    asn = integer(p, "BgpAsn", DEFAULT_ASN, low=1, high=4294967294)
    tags = _tag_specs(p, "customer-gateway")  # checked before anything is made
    # EC2 answers a second create of the same gateway with the first one, not a twin
    for r in ctx.core.records.find(CGW):
        if (r.attributes["type"], r.attributes["ip"], r.attributes["asn"]) == (kind, ip, asn):
            return {"customerGateway": _cgw(r, ctx)}
    rec = ctx.core.records.add(CGW, "cgw", {"type": kind, "ip": ip, "asn": asn,
                                            "device": p.get("DeviceName")})
    tags_at_create(ctx, p, "customer-gateway", "other", rec.id, tags)
    return {"customerGateway": _cgw(rec, ctx)}


@action(WRITE)
def DeleteCustomerGateway(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    r = ctx.core.records.get(CGW, required(p, "CustomerGatewayId"), "customer gateway")
    ctx.core.records.delete(r.id)
    return {"return": True}


@action(READ_ONLY)
def DescribeCustomerGateways(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = CGW_FILTERS.parse(p)
    found = ctx.core.records.find(CGW, members(p, "CustomerGatewayId") or None,
                                  "customer gateway")
    return {"customerGatewaySet": CGW_FILTERS.apply(flt, (_cgw(r, ctx) for r in found))}


CGW_FILTERS = FilterTable({"customer-gateway-id": key("customerGatewayId"),
                           "ip-address": key("ipAddress"), "bgp-asn": key("bgpAsn"),
                           "type": key("type"), "state": constant("available")}, tags=tag_set)
