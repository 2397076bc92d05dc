"""What a deployment's DNS name should answer, from who serves and which front doors are up."""

from __future__ import annotations

import ipaddress

from ..gslb.publisher import Wanted
from ..gslb.zones import absolute
from ..spec import DeploymentSpec


def wanted_answer(spec: DeploymentSpec, serving: set[str], doors_up: dict[str, str],
                  central: str, weights: dict[str, int] | None = None) -> Wanted | None:
    """The records to publish, or None to keep what is published (nothing to say yet).

    Per-site front doors: every door that is up (`publish: front-doors`, the default: each
    forwards to whoever serves), or only the serving sites' doors (`publish: serving`). With
    the one central front door: its address. Never an empty answer: a name that resolves to
    nothing is worse than one that resolves to a door that may still forward.

    Active-active with per-site doors also carries each serving door's weight (its location's
    share now): an authority with weighted records (Route 53) answers in that proportion."""
    dns = spec.dns
    if dns is None:
        return None
    if spec.front_doors == "per-site":
        chosen = {loc: host for loc, host in doors_up.items()
                  if dns.publish == "front-doors" or loc in serving}
        addresses = frozenset(chosen.values())
    else:
        addresses = frozenset({central})
    addresses = frozenset(a for a in addresses if _publishable(a))
    if not addresses:
        return None
    shares: tuple[tuple[str, int], ...] = ()
    if spec.traffic.mode == "active-active" and spec.front_doors == "per-site" and weights:
        shares = tuple(sorted((host, weights.get(loc, 0)) for loc, host in doors_up.items()
                              if host in addresses))
    zone = dns.zone.rstrip(".") + "."
    return Wanted(provider=dns.provider, zone=zone,
                  name=absolute(dns.name or spec.service or spec.name, zone), ttl=dns.ttl,
                  addresses=addresses, weights=shares)


def _publishable(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False
