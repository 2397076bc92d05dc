"""What an instance may open, from its groups (EC2's semantics), and the nft matches a netns
location writes for it."""

from __future__ import annotations

from typing import Any

from onepane.inventory.firewall import ALL_TRAFFIC, Group, egress_of
from onepane.providers.netns import _egress_matches

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


def test_nft_matches_for_egress_rules() -> None:
    assert _egress_matches([WEB]) == ["ip daddr { 10.1.0.0/16 } tcp dport 443"]
    assert _egress_matches([{**WEB, "protocol": "udp", "from_port": 53, "to_port": 60,
                             "cidrs": ["0.0.0.0/0"]}]) == ["udp dport 53-60"]
    assert _egress_matches([{**WEB, "protocol": "-1", "cidrs": ["10.2.0.0/24", "::/0"]}]) == [
        "ip daddr { 10.2.0.0/24 }"]
    assert _egress_matches([{**WEB, "cidrs": ["::/0"]}]) == []  # IPv6 only: nothing to write
    assert _egress_matches([{**WEB, "protocol": "icmp", "cidrs": ["0.0.0.0/0"]}]) == [
        "meta l4proto icmp"]
