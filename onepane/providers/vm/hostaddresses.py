"""Elastic addresses of VMs on remote hosts, made on onepane's own machine.

onepane reaches a remote host only through libvirt, so it cannot rewrite packets there. It
does not need to: it already routes each guest's own /32 to the host that runs it
(`route_guests`), so an elastic address is rewritten to the guest's address on onepane's machine
— one nft table per location, replaced whole (prerouting for traffic routed through the
machine, output for its own clients; answers are rewritten back by conntrack) — and the
rewritten packet takes the guest's route, wherever the guest runs now: a live move that moves
the guest's route moves its elastic addresses with it. Each address also gets a /32 route of
its own (marked ADDRESS_ROUTES, towards the guest's host), so that it is routable at all on a
machine whose other routes would drop it; the routes this location made and no longer wants are
found by that mark and their host. With no address wanted, the table goes too.
"""

from __future__ import annotations

import re
import subprocess

from ..dcnet import ADDRESS_ROUTES, ip
from ..nftrules import replace_table


def table_name(location: str) -> str:
    return "onepane_eip_" + re.sub(r"[^A-Za-z0-9_]", "_", location)


def route(location: str, wanted: dict[str, tuple[str, str]], vias: set[str]) -> None:
    """`wanted`: elastic address -> (the guest's own address, the host address routing it);
    `vias`: every host address of this location (whose marked routes are this location's)."""
    dnat = [f"  ip daddr {address} tcp dport 0-65535 dnat to {guest}"
            for address, (guest, _) in sorted(wanted.items())]
    if dnat:
        replace_table(["nft"], "ip", table_name(location), [
            " chain prerouting {", "  type nat hook prerouting priority dstnat; policy accept;",
            *dnat, " }",
            " chain output {", "  type nat hook output priority -100; policy accept;", *dnat,
            " }"], location)
    else:  # none wanted: nothing of this location's is left on the machine
        subprocess.run(["nft", "delete", "table", "ip", table_name(location)],
                       capture_output=True, check=False)
    for address, (_, via) in sorted(wanted.items()):
        ip("route", "replace", f"{address}/32", "via", via, "proto", ADDRESS_ROUTES)
    for line in ip("route", "show", "proto", ADDRESS_ROUTES, check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "via" and parts[2] in vias:
            address = parts[0].removesuffix("/32")
            if address not in wanted:
                ip("route", "del", f"{address}/32", "via", parts[2], "proto", ADDRESS_ROUTES,
                   check=False)
