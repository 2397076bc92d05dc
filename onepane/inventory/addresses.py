"""Elastic addresses: an address of onepane's own that points at one instance, or at whatever
instance serves a deployment, and moves when told (associate) or when the deployment fails
over (AddressRouter follows its primary).

What an address means to a faux-mobility user is that it stays while what answers behind it
moves between locations. The addresses come from POOL, which every host that runs onepane's
namespaces already routes nowhere (the catch-all blackhole of 10.200.0.0/16; no location
index is 0), so an address that is not associated goes nowhere, off the machine included.
Locations that can route one to an instance declare `Feature.addresses` (netns locations:
a host route to the namespace and a DNAT inside it); an address associated with an instance
elsewhere is kept and reported unrouted, with the reason.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict, InvalidInput, NotFound, OnepaneError
from ..events import EventLog
from .records import Record, Records, record_id

POOL = ipaddress.ip_network("10.200.0.0/24")
KIND = "eip"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Address:
    id: str  # eipalloc-…
    public_ip: str
    instance: str | None  # associated with this instance, or
    deployment: str | None  # with whatever instance serves this deployment, or
    interface: str | None  # with a network interface (eni-…): its instance, once attached
    association: str | None  # eipassoc-…, while associated
    routed_to: str | None  # the instance it reaches now (None: nowhere)
    location: str | None  # where that instance is
    why_not: str | None  # associated but not routed: why
    tags: dict[str, str]


def _view(r: Record) -> Address:
    a = r.attributes
    return Address(r.id, a["public_ip"], a.get("instance"), a.get("deployment"),
                   a.get("interface"), a.get("association"), a.get("routed_to"), a.get("location"),
                   a.get("why_not"), dict(r.tags))


class ElasticAddresses:
    def __init__(self, records: Records, events: EventLog) -> None:
        self.records = records
        self.events = events
        self.changed: Callable[[], None] = lambda: None  # set by the core: route them now
        self._lock = threading.Lock()  # two allocations never take one address

    def find(self, ids: list[str] | None = None) -> list[Address]:
        return [_view(r) for r in self.records.find(KIND, ids, "allocation")]

    def get(self, alloc_id: str) -> Address:
        return self.find([alloc_id])[0]

    def by_ip(self, public_ip: str) -> Address:
        for a in self.find():
            if a.public_ip == public_ip:
                return a
        raise NotFound(f"the address {public_ip!r} is not one of onepane's", field="public_ip")

    def allocate(self) -> Address:
        with self._lock:
            used = {a.public_ip for a in self.find()}
            free = next((str(h) for h in POOL.hosts() if str(h) not in used), None)
            if free is None:
                raise Conflict(f"every address of {POOL} is allocated; release one first",
                               field="address")
            rec = self.records.add(KIND, "eipalloc", {"public_ip": free})
        self.events.emit("address.allocated", f"address {free} allocated ({rec.id})",
                         subject=rec.id)
        return _view(rec)

    def associate(self, alloc_id: str, *, instance: str | None = None,
                  deployment: str | None = None, interface: str | None = None,
                  reassociate: bool = True) -> Address:
        """Point the address at an instance, at a deployment's serving instance, or at a
        network interface (it reaches the interface's instance while one is attached: EC2's
        association made before the attachment)."""
        wanted = {"instance": instance, "deployment": deployment, "interface": interface}
        if sum(v is not None for v in wanted.values()) != 1:
            raise InvalidInput("associate an address with an instance, a deployment or an "
                               "interface, one of them", field="instance")
        current = self.get(alloc_id)
        now = {"instance": current.instance, "deployment": current.deployment,
               "interface": current.interface}
        if current.association and not reassociate and now != wanted:
            raise Conflict(f"{current.public_ip} is already associated ({_target(current)})",
                           field="address")
        assoc = current.association if now == wanted and current.association \
            else record_id("eipassoc")
        view = _view(self.records.update(alloc_id, **wanted, association=assoc))
        self.events.emit("address.associated",
                         f"address {view.public_ip} associated with {_target(view)}",
                         subject=alloc_id, data=wanted)
        self.changed()
        return self.get(alloc_id)

    def disassociate(self, alloc_id: str) -> Address:
        view = _view(self.records.update(alloc_id, instance=None, deployment=None,
                                         interface=None, association=None))
        self.events.emit("address.disassociated", f"address {view.public_ip} disassociated",
                         subject=alloc_id)
        self.changed()
        return self.get(alloc_id)

    def release(self, alloc_id: str) -> None:
        current = self.get(alloc_id)
        if current.association:
            raise Conflict(f"{current.public_ip} is associated ({_target(current)}): "
                           "disassociate it first", field="address")
        self.records.delete(alloc_id)
        self.events.emit("address.released", f"address {current.public_ip} released",
                         subject=alloc_id)
        self.changed()

    def forget_instance(self, instance: str) -> None:
        """The instance is gone: its addresses are associated with nothing (EC2's way); one
        associated with an interface stays with the interface."""
        for a in self.find():
            if a.instance == instance:
                self.disassociate(a.id)

    def forget_interface(self, interface: str) -> None:
        """The interface is deleted: its addresses are associated with nothing."""
        for a in self.find():
            if a.interface == interface:
                self.disassociate(a.id)

    def routed(self, alloc_id: str, routed_to: str | None, location: str | None,
               why_not: str | None) -> None:
        self.records.update(alloc_id, routed_to=routed_to, location=location, why_not=why_not)


Target = tuple[str, str, str]  # (instance id, its location, its provider id)


def _target(a: Address) -> str:
    return (f"instance {a.instance}" if a.instance else f"deployment {a.deployment}"
            if a.deployment else f"interface {a.interface}")


def interface_owner(records: Records, interface: str) -> str | None:
    """The instance a network interface (a record of kind `eni`) is attached to, if any."""
    for r in records.find("eni"):
        if r.id == interface and (att := r.attributes.get("attachment")):
            return "inst-" + str(att["instance"]).removeprefix("i-")
    return None


def interface_addresses(records: Records) -> dict[str, str]:
    """The private addresses of network interfaces attached to instances (the records of kind
    `eni` the EC2 front end keeps, api/ec2/interfaces.py): each reaches its instance the way
    an elastic address does, which is what an interface's address is at a netns location."""
    out: dict[str, str] = {}
    for r in records.find("eni"):
        att = r.attributes.get("attachment")
        if not att:
            continue
        instance = "inst-" + str(att["instance"]).removeprefix("i-")
        for a in r.attributes.get("addresses", []):
            out.setdefault(str(a["address"]), instance)
    return out


class AddressRouter:
    """Routes each associated address to its instance, location by location, with the whole
    picture each time (like the security groups' Enforcer): at the new location first, then
    off the old one, so that a move leaves the address unrouted for as short as can be.

    `serving` (set by the core) answers which instance serves a deployment now; `instance`
    which location and provider id an instance has. Run after every change and every half
    second, which is how soon an address follows a failover."""

    def __init__(self, addresses: ElasticAddresses, registry: Any,
                 instance: Callable[[str], Target | None],
                 serving: Callable[[str, str | None], Target | None],
                 interfaces: Callable[[], dict[str, str]] = dict,
                 interface_owner: Callable[[str], str | None] = lambda _eni: None) -> None:
        self.addresses = addresses
        self.interfaces = interfaces  # address -> instance, for attached interfaces
        self.interface_owner = interface_owner  # interface -> the instance it is attached to
        self.registry = registry
        self.instance = instance
        self.serving = serving
        self._applied: dict[str, dict[str, str]] = {}  # location -> {address: provider id}
        self._lock = threading.Lock()

    def _why_not_routed(self, location: str) -> str | None:
        """None where the location routes addresses to its instances; else why it does not."""
        from ..providers.base import Feature
        try:
            return self.registry.get(location).capabilities.missing.get(Feature.addresses)
        except OnepaneError as exc:
            return exc.detail

    def apply_all(self) -> None:
        with self._lock:
            self._apply()

    def _apply(self) -> None:
        found = self.addresses.find()
        interfaces = self.interfaces()
        if not found and not interfaces and not self._applied:
            return
        wanted: dict[str, dict[str, str]] = {}
        outcome: dict[str, tuple[str | None, str | None, str | None]] = {}
        for a in found:
            owner = self.interface_owner(a.interface) if a.interface else None
            target = self.instance(a.instance) if a.instance else \
                self.serving(a.deployment, a.routed_to) if a.deployment else \
                self.instance(owner) if owner else None
            if target is None:
                outcome[a.id] = (None, None, "associated with nothing that runs" if
                                 a.association else None)
                continue
            inst, location, provider_id = target
            why = self._why_not_routed(location)
            if why is not None:
                outcome[a.id] = (None, location, f"{location}: {why}")
                continue
            wanted.setdefault(location, {})[a.public_ip] = provider_id
            outcome[a.id] = (inst, location, None)
        for address, instance in sorted(interfaces.items()):
            target = self.instance(instance)
            if target is None or self._why_not_routed(target[1]) is not None:
                continue  # an interface elsewhere is a record only (README: EC2 front end)
            wanted.setdefault(target[1], {}).setdefault(address, target[2])
        # new pictures first (an address arrives before it leaves), then the emptied ones
        order = sorted(set(wanted) | set(self._applied), key=lambda loc: loc not in wanted)
        for location in order:
            picture = wanted.get(location, {})
            if self._applied.get(location) == picture:
                continue
            try:
                self.registry.run(location, lambda p, w=picture: p.route_addresses(w),
                                  timeout=10)
                if picture:
                    self._applied[location] = picture
                else:
                    self._applied.pop(location, None)
            except OnepaneError as exc:
                log.warning("elastic addresses at %s: %s", location, exc.detail)
                for a in found:
                    if outcome.get(a.id, (None, None, None))[1] == location:
                        outcome[a.id] = (None, location, exc.detail)
        for a in found:
            routed_to, at, why = outcome[a.id]
            if (a.routed_to, a.location, a.why_not) != (routed_to, at, why):
                self.addresses.routed(a.id, routed_to, at, why)
                if routed_to and routed_to != a.routed_to:
                    self.addresses.events.emit(
                        "address.routed", f"address {a.public_ip} now reaches {routed_to} at "
                        f"{at}", subject=a.id, location=at,
                        data={"instance": routed_to, "from": a.routed_to})
