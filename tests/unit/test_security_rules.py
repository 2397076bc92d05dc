"""What an instance may open, from its groups (EC2's semantics), and the nft matches the
locations that filter with nft write for rules."""

from __future__ import annotations

from typing import Any

from onepane.inventory.firewall import ALL_TRAFFIC, Group, egress_of
from onepane.providers.nftrules import rule_matches

WEB = {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["10.1.0.0/16"],
       "groups": []}


def group(network: str | None, egress: list[dict[str, Any]]) -> Group:
    return Group("sg-1", "g", "", network, [], egress, [])


def test_egress_is_the_union_of_the_groups_rules_as_ec2_has_it() -> None:
    assert egress_of([group("net-1", [dict(ALL_TRAFFIC)])]) is None  # a VPC group's default
    assert egress_of([group("net-1", [WEB])]) == [WEB]
    assert egress_of([group("net-1", [])]) == []  # a VPC group with its default revoked
    assert egress_of([group(None, [])]) is None  # outside a VPC, no rule: nothing is limited
    assert egress_of([group(None, [WEB])]) == [WEB]  # ... until it is given one
    assert egress_of([group("net-1", [WEB]), group(None, [])]) is None  # the union


def test_nft_matches_for_rules_both_ways() -> None:
    assert rule_matches([WEB], "daddr") == ["ip daddr { 10.1.0.0/16 } tcp dport 443"]
    assert rule_matches([WEB], "saddr") == ["ip saddr { 10.1.0.0/16 } tcp dport 443"]
    udp = {**WEB, "protocol": "udp", "from_port": 53, "to_port": 60, "cidrs": ["0.0.0.0/0"]}
    assert rule_matches([udp], "daddr") == ["udp dport 53-60"]
    every = {**WEB, "protocol": "-1", "cidrs": ["10.2.0.0/24", "::/0"]}
    assert rule_matches([every], "daddr") == ["ip daddr { 10.2.0.0/24 }"]
    assert rule_matches([{**WEB, "cidrs": ["::/0"]}], "daddr") == []  # IPv6 only: nothing
    icmp = {**WEB, "protocol": "icmp", "cidrs": ["0.0.0.0/0"]}
    assert rule_matches([icmp], "saddr") == ["meta l4proto icmp"]


def test_answers_pass_by_their_ports_but_never_open_a_connection() -> None:
    """What lets a connection that was open when its VM moved live keep its answers (the new
    location's connection tracking never saw it start): a TCP rule's answers, from its port
    back to its blocks — and never a bare SYN, so no one opens a connection through them."""
    assert rule_matches([WEB], "daddr", answers=True) == [
        "ip daddr { 10.1.0.0/16 } tcp sport 443 tcp flags & (syn | ack) != syn"]
    udp = {**WEB, "protocol": "udp"}
    icmp = {**WEB, "protocol": "icmp"}
    every = {**WEB, "protocol": "-1"}
    assert rule_matches([udp, icmp, every], "daddr", answers=True) == [
        "ip daddr { 10.1.0.0/16 } udp sport 443",
        "ip daddr { 10.1.0.0/16 } icmp type echo-reply"]  # every protocol: the peer's rules
