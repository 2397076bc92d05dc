"""Security-group rules as nftables match expressions, for the locations that filter with nft
inside their namespace (netns: by an instance's port and uid; vm: by a guest's address)."""

from __future__ import annotations

import subprocess
from typing import Any, Literal

from ..errors import PermanentProviderError

Side = Literal["saddr", "daddr"]  # which address of a packet a rule's blocks are


def rule_matches(rules: list[dict[str, Any]], side: Side, answers: bool = False) -> list[str]:
    """One match per rule: its protocol and ports, and its blocks as the packet's `side`
    (the source of what comes in, the destination of what goes out). IPv6 blocks are left
    out: the namespaces have no IPv6 routes; a rule with only those matches nothing.
    `answers`: the packets that answer what a rule allows (the blocks as `side`): from a TCP
    or UDP rule's ports as source ports — for TCP never a bare SYN, so a peer cannot start a
    connection through them whatever port it sends from — and an ICMP rule's echo replies.
    A rule of every protocol has none: what answers it is allowed by its peer's own rules."""
    out = []
    for r in rules:
        if answers and r["protocol"] not in ("tcp", "udp", "icmp"):
            continue
        blocks = [c for c in r.get("cidrs", []) if ":" not in c]
        if not blocks:
            continue
        where = "" if "0.0.0.0/0" in blocks else f"ip {side} {{ {', '.join(blocks)} }} "
        proto, lo, hi = r["protocol"], r.get("from_port"), r.get("to_port")
        if proto == "-1":
            out.append(where.strip() or "meta nfproto ipv4")
        elif proto in ("tcp", "udp"):
            ports = f"{lo}" if lo == hi else f"{lo}-{hi}"
            if not answers:
                out.append(f"{where}{proto} dport {ports}")
            elif proto == "tcp":
                out.append(f"{where}tcp sport {ports} tcp flags & (syn | ack) != syn")
            else:
                out.append(f"{where}udp sport {ports}")
        elif proto == "icmp":
            out.append(f"{where}icmp type echo-reply" if answers else f"{where}meta l4proto icmp")
        else:
            out.append(f"{where}meta l4proto {int(proto)}")
    return out


def replace_table(argv: list[str], family: str, name: str, body: list[str],
                  location: str) -> None:
    """Load one nft table whole, replacing what was there (`argv`: nft in the namespace)."""
    script = f"table {family} {name}\ndelete table {family} {name}\n" + "\n".join(
        [f"table {family} {name} {{", *body, "}"]) + "\n"
    proc = subprocess.run([*argv, "-f", "-"], input=script, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise PermanentProviderError(f"nft at {location}: {proc.stderr.strip()}")
