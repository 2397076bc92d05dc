"""Security groups on remote hosts, through libvirt's own network filters (nwfilter).

onepane changes nothing on a remote host but what libvirt lets it, and nwfilter is libvirt's
firewall: a filter per guest (`onepane-<instance>`), defined on every host of the location (a
guest that moves finds its filter there), referenced by the guest's interface. libvirt turns
it into iptables chains for the guest's tap device, with connection tracking.

Where it can hold: libvirt's chain for traffic *to* a guest matches bridged frames only. What
another guest sends (on the same host, or from another host over the guests' shared segment)
is bridged and passes it; what the host routes to the guest (from onepane's machine, from the
outside) never does. Traffic *from* the guest always passes its chain — frames enter the host
through the guest's port — and so for routed traffic the filter decides on the guest's side:
an inbound connection is refused by dropping the guest's answers to it (a peer's SYN is
answered by nothing, as if dropped; TCP never opens), outbound by dropping what the guest
sends. Answers to what a rule allows, and to onepane's health checks, pass. Routed UDP
datagrams and ICMP requests a rule does not allow still reach the guest; only its answers are
dropped.

What a live move loses: the source host's connection tracking. So TCP segments with ACK and
without SYN (the segments of connections already open) pass both ways without it; a connection
is opened only by a SYN, which the rules decide (and a peer's SYN is answered by a SYN-ACK,
which they decide too). UDP flows the rules opened answer again only once the guest or its peer
sends anew from the destination.
"""

from __future__ import annotations

import ipaddress
import uuid
import xml.etree.ElementTree as ET
from typing import Any

from .guestnet import CHECKER

PREFIX = "onepane-"
FILTERS = uuid.UUID("5d1f4a8e-2b77-4c53-9a0e-6f1c2d3b4a59")  # namespace of their UUIDs
OPEN_SEGMENT = "SYN,ACK/ACK"  # nwfilter's mask/set: ACK set, SYN not (iptables --tcp-flags)


def filter_name(provider_id: str) -> str:
    return PREFIX + provider_id


def render(provider_id: str, ingress: list[dict[str, Any]] | None,
           egress: list[dict[str, Any]] | None) -> str:
    """The guest's filter. `ingress`: what may open connections to it (None: anything);
    `egress`: what it may open (None: anything)."""
    root = ET.Element("filter", name=filter_name(provider_id), chain="root")
    # the same UUID at every definition: libvirt takes a filter again only under its own UUID
    ET.SubElement(root, "uuid").text = str(uuid.uuid5(FILTERS, filter_name(provider_id)))

    def rule(action: str, direction: str, priority: int, proto: str,
             attrs: dict[str, str] | None = None, stateful: bool = True) -> None:
        el = ET.SubElement(root, "rule", action=action, direction=direction,
                           priority=str(priority))
        if not stateful:
            el.set("statematch", "false")
        ET.SubElement(el, proto, attrs or {})

    if ingress is None:
        rule("accept", "in", 100, "all")
    else:
        rule("accept", "in", 100, "all", {"srcipaddr": CHECKER})  # onepane's health checks
        for proto, attrs in _matches(ingress, "src"):
            rule("accept", "in", 200, proto, attrs)
    if ingress is not None or egress is not None:
        # Segments of TCP connections already open, both ways, whatever the connection
        # tracking says: a live move leaves the source host's tracking behind, and the
        # destination's would otherwise drop the next segment of every open connection
        # (seen: a guest's FIN after its move, so the client waited out its timeout). Only
        # a SYN opens a connection, and SYNs (with or without ACK) meet the other rules.
        for direction in ("out", "in"):
            rule("accept", direction, 150, "tcp", {"flags": OPEN_SEGMENT}, stateful=False)
    if egress is None:
        rule("accept", "out", 300, "all")
    else:
        for proto, attrs in _matches(egress, "dst"):
            rule("accept", "out", 300, proto, attrs)
    # what no rule allowed: the guest's answers to it, and what it opens itself
    rule("drop", "out", 900, "all")
    rule("drop", "in", 900, "all")
    return ET.tostring(root, encoding="unicode")


def _matches(rules: list[dict[str, Any]], peer: str) -> list[tuple[str, dict[str, str]]]:
    """Each rule's IPv4 blocks as nwfilter protocol elements; the peer is the source of what
    comes in, the destination of what goes out. A protocol nwfilter cannot name at the IP
    level (not tcp, udp, icmp or all) matches nothing, as IPv6 blocks do (no IPv6 routes)."""
    out = []
    for r in rules:
        proto = {"-1": "all", "tcp": "tcp", "udp": "udp", "icmp": "icmp"}.get(str(r["protocol"]))
        if proto is None:
            continue
        for block in r.get("cidrs", []):
            if ":" in block:
                continue
            net = ipaddress.ip_network(block, strict=False)
            attrs: dict[str, str] = {}
            if net.prefixlen:
                attrs[f"{peer}ipaddr"] = str(net.network_address)
                attrs[f"{peer}ipmask"] = str(net.prefixlen)
            if proto in ("tcp", "udp"):
                attrs["dstportstart"] = str(r.get("from_port"))
                attrs["dstportend"] = str(r.get("to_port"))
            out.append((proto, attrs))
    return out


def with_filter(interface_xml: str, name: str) -> str | None:
    """The interface's XML referencing filter `name`, or None when it already does."""
    iface = ET.fromstring(interface_xml)
    ref = iface.find("filterref")
    if ref is not None and ref.get("filter") == name:
        return None
    if ref is None:
        ref = ET.SubElement(iface, "filterref")
    ref.attrib.clear()
    ref.set("filter", name)
    return ET.tostring(iface, encoding="unicode")


def interfaces(domain_xml: str) -> list[str]:
    """The domain's interfaces, each as its own XML (what updateDeviceFlags takes)."""
    return [ET.tostring(i, encoding="unicode")
            for i in ET.fromstring(domain_xml).findall("devices/interface")]


def referenced(domain_xml: str) -> list[str]:
    """The onepane filters the domain's interfaces reference."""
    return [ref.get("filter", "") for ref in ET.fromstring(domain_xml).findall(
        "devices/interface/filterref") if ref.get("filter", "").startswith(PREFIX)]
