"""What a vm location does with its guests' network policy: security groups as nftables in
the location's namespace, matched by each guest's own address, and elastic addresses routed
to a guest (a mixin of VmProvider: it needs the location's namespace and address book)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import PermanentProviderError
from ..dcnet import DataCenterNet
from ..nftrules import Side, replace_table, rule_matches
from .guestnet import CHECKER, AddressBook


class GuestPolicy:
    location: str
    net: DataCenterNet
    addresses: AddressBook

    def enforce(self, ingress: dict[str, list[dict[str, Any]]],
                groups: dict[str, dict[str, list[dict[str, Any]]]],
                egress: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """nftables in the location's namespace, on what it forwards between its guests'
        bridge and the world (the host, other locations, elastic addresses after their
        DNAT): a guest in a group receives only what its ingress rules allow and opens only
        what its egress rules allow, matched by the guest's own address — a packet passes
        both its source's egress chain and its destination's ingress chain. Answers on
        established connections pass, and so do onepane's health checks (from
        guestnet.CHECKER only). Traffic between two guests of one location is routed by the
        location too (guestnet), so it passes the same chains.

        Answers also pass by their ports (forward_table)."""
        lines = forward_table(ingress, egress or {}, self.addresses.get)
        replace_table(self.net.exec_argv(["nft"]), "inet", "onepane_sg", lines, self.location)

    def route_addresses(self, wanted: dict[str, str]) -> None:
        """Each address reaches its guest, every TCP port to the same port of the guest's own
        address: a host route into this location's namespace and a DNAT there, the same
        /32-route mechanism that carries the guest's own address (a live move re-routes)."""
        targets = {}
        for address, provider_id in wanted.items():
            guest = self.addresses.get(provider_id)
            if guest is None:
                raise PermanentProviderError(f"instance {provider_id} at {self.location} has "
                                             "no guest address")
            targets[address] = guest
        self.net.route_addresses(targets)



def forward_table(ingress: dict[str, list[dict[str, Any]]],
                  egress: dict[str, list[dict[str, Any]]],
                  address_of: Callable[[str], str | None]) -> list[str]:
    """The body of the location's `inet onepane_sg` table: a forward chain that lets answers
    and onepane's checks through, then every packet through its source's egress chain and its
    destination's ingress chain (provider id -> rules; `address_of` gives a guest's address).

    Answers also pass by their ports — a TCP or UDP packet from a rule's port back to the
    rule's peers, an ICMP echo reply where ICMP is allowed: a flow that was under way when one
    of its ends moved here live has no entry in this location's connection tracking, and its
    answers must still pass (never a bare SYN: nobody opens a connection that way)."""
    answers: list[str] = []
    chains: dict[Side, list[str]] = {"daddr": [], "saddr": []}
    # inbound: to the guest, rules name sources; outbound: from it, rules name destinations
    directions: list[tuple[dict[str, list[dict[str, Any]]], Side, Side]] = [
        (ingress, "daddr", "saddr"), (egress, "saddr", "daddr")]
    for by_guest, guest_is, rule_is in directions:
        for provider_id, rules in sorted(by_guest.items()):
            guest = address_of(provider_id)
            if guest is None:
                continue
            chains[guest_is] += [f"  ip {guest_is} {guest} {match} return"
                                 for match in rule_matches(rules, rule_is)]
            chains[guest_is].append(f"  ip {guest_is} {guest} drop")
            answers += [f"  ip {rule_is} {guest} {match} accept"
                        for match in rule_matches(rules, guest_is, answers=True)]
    return [" chain forward {", "  type filter hook forward priority 0; policy accept;",
            "  ct state established,related accept",
            f"  ip saddr {CHECKER} accept",  # onepane's own health checks
            *answers, "  jump egress", "  jump ingress", " }",
            " chain egress {", *chains["saddr"], " }",
            " chain ingress {", *chains["daddr"], " }"]
