"""Security groups as libvirt network filters (providers/vm/hostfilters.py): the rules each
group becomes, checked on the XML libvirt is given (the lab test proves libvirt's answer)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from onepane.providers.vm.guestnet import CHECKER
from onepane.providers.vm.hostfilters import filter_name, referenced, render, with_filter


def rules(xml: str) -> list[tuple[str, str, str, dict[str, str]]]:
    return [(r.get("action", ""), r.get("direction", ""), r[0].tag, dict(r[0].attrib))
            for r in ET.fromstring(xml).findall("rule")]


OPEN_SEGMENTS = [("accept", "out", "tcp", {"flags": "SYN,ACK/ACK"}),
                 ("accept", "in", "tcp", {"flags": "SYN,ACK/ACK"})]


def test_ingress_rules_checks_and_the_final_drops() -> None:
    xml = render("inst-a", [{"protocol": "tcp", "from_port": 80, "to_port": 80,
                             "cidrs": ["10.200.0.0/16", "::/0"]},
                            {"protocol": "icmp", "cidrs": ["0.0.0.0/0"]},
                            {"protocol": "47", "cidrs": ["0.0.0.0/0"]}], None)
    root = ET.fromstring(xml)
    assert root.get("name") == filter_name("inst-a") == "onepane-inst-a"
    assert root.findtext("uuid") == ET.fromstring(render("inst-a", [], None)).findtext("uuid")
    assert rules(xml) == [
        ("accept", "in", "all", {"srcipaddr": CHECKER}),  # onepane's health checks
        ("accept", "in", "tcp", {"srcipaddr": "10.200.0.0", "srcipmask": "16",
                                 "dstportstart": "80", "dstportend": "80"}),
        ("accept", "in", "icmp", {}),  # every source; IPv6 and protocol 47: nothing
        *OPEN_SEGMENTS,  # connections already open: a moved guest's keep going
        ("accept", "out", "all", {}),  # no egress rules: it may open anything
        ("drop", "out", "all", {}), ("drop", "in", "all", {})]


def test_egress_rules_and_an_opened_filter() -> None:
    xml = render("inst-b", [], [{"protocol": "udp", "from_port": 53, "to_port": 53,
                                 "cidrs": ["10.0.0.2/32"]}])
    assert ("accept", "out", "udp", {"dstipaddr": "10.0.0.2", "dstipmask": "32",
                                     "dstportstart": "53", "dstportend": "53"}) in rules(xml)
    assert ("accept", "out", "all", {}) not in rules(xml)
    opened = rules(render("inst-b", None, None))  # left every group
    assert opened[:2] == [("accept", "in", "all", {}), ("accept", "out", "all", {})]


def test_open_segments_pass_without_connection_tracking_and_only_they() -> None:
    egress_only = rules(render("inst-d", None, [{"protocol": "-1", "cidrs": ["0.0.0.0/0"]}]))
    assert egress_only[0] == ("accept", "in", "all", {}) and OPEN_SEGMENTS[0] in egress_only
    root = ET.fromstring(render("inst-c", [], []))
    stateless = [r for r in root.findall("rule") if r.get("statematch") == "false"]
    assert [(r.get("direction"), r[0].tag, r[0].get("flags")) for r in stateless] == [
        ("out", "tcp", "SYN,ACK/ACK"), ("in", "tcp", "SYN,ACK/ACK")]  # never a SYN
    assert all(r.get("statematch") is None for r in root.findall("rule") if r not in stateless)


def test_an_interface_references_its_filter_once() -> None:
    iface = "<interface type='bridge'><mac address='52:54:00:00:00:01'/></interface>"
    changed = with_filter(iface, "onepane-inst-a")
    assert changed is not None and with_filter(changed, "onepane-inst-a") is None
    domain = f"<domain><devices>{changed}</devices></domain>"
    assert referenced(domain) == ["onepane-inst-a"]
