"""Security groups: named sets of firewall rules that instances belong to.

onepane keeps the groups, their rules and their members, and a location that can enforce them
does (`Feature.firewall`: a netns location, with nftables inside its namespace, for inbound
TCP to each instance's port and for all that each instance opens, matched by its own uid; a
vm location, with nftables on what its namespace forwards to and from each guest's address).
Elsewhere the rules are kept and not enforced, and said so: an instance that joins a group
with rules at such a location writes a `security_group.not_enforced` event, so that nobody
believes a port is closed because a rule says it."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound
from ..events import EventLog
from ..model import new_id
from ..store.tables import SecurityGroupRow

NOT_ENFORCED = ("this location does not enforce security groups: the rules are kept and "
                "reported, and traffic is not filtered by them")
ENFORCED_WHERE = ("at netns locations (inbound TCP, and outbound), vm locations (by the guest's "
                  "address, both ways) and EC2 clouds (their own groups); kept, not enforced, "
                  "elsewhere")
PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "-1": "-1", "all": "-1"}
ALL_TRAFFIC: dict[str, Any] = {"protocol": "-1", "from_port": None, "to_port": None,
                               "cidrs": ["0.0.0.0/0"], "groups": []}


@dataclass
class Rule:
    protocol: str  # "tcp", "udp", "icmp", "-1" (all) or an IP protocol number
    from_port: int | None
    to_port: int | None
    cidrs: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "from_port": self.from_port, "to_port": self.to_port,
                "cidrs": sorted(self.cidrs), "groups": sorted(self.groups)}


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    description: str
    network: str | None
    ingress: list[dict[str, Any]]
    egress: list[dict[str, Any]]
    members: list[str]
    enforced: bool = False
    why_not: str = NOT_ENFORCED


def check_rule(rule: Rule) -> Rule:
    proto = PROTOCOLS.get(str(rule.protocol).lower(), str(rule.protocol))
    if not (proto == "-1" or (proto.isdigit() and 0 <= int(proto) <= 255)):
        raise InvalidInput(f"unknown protocol {rule.protocol!r}; use tcp, udp, icmp, -1 or a "
                           "number", field="protocol")
    name = {"6": "tcp", "17": "udp", "1": "icmp"}.get(proto, proto)
    lo, hi = rule.from_port, rule.to_port
    if name in ("tcp", "udp"):
        if lo is None or hi is None or not (0 <= lo <= hi <= 65535):
            raise InvalidInput(f"{name} rules need 0 <= FromPort <= ToPort <= 65535",
                               field="from_port")
    elif name == "icmp":
        if lo is None or hi is None or not (-1 <= lo <= 255 and -1 <= hi <= 255):
            raise InvalidInput("icmp rules take a type and code between -1 and 255",
                               field="from_port")
    else:
        lo = hi = None
    for cidr in rule.cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise InvalidInput(f"{cidr!r} is not a CIDR block", field="cidr") from exc
    if not rule.cidrs and not rule.groups:
        raise InvalidInput("a rule needs a CIDR block or a group", field="cidr")
    return Rule(name, lo, hi, [str(ipaddress.ip_network(c, strict=False)) for c in rule.cidrs],
                list(rule.groups))


class SecurityGroups:
    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.store = events.store
        # Set by the core: does a location enforce groups, and what to do after a change.
        self.enforced_at: Callable[[str], bool] = lambda location: False
        self.changed: Callable[[], None] = lambda: None

    def find(self, ids: list[str] | None = None) -> list[Group]:
        self.default(None)
        with self.store.tx() as s:
            rows = [_view(r) for r in s.scalars(select(SecurityGroupRow).order_by(
                SecurityGroupRow.created_at))]
        if ids:
            if missing := set(ids) - {g.id for g in rows}:
                raise NotFound(f"the security group {sorted(missing)[0]!r} does not exist",
                               field="security_group")
            rows = [g for g in rows if g.id in ids]
        return rows

    def get(self, group_id: str) -> Group:
        return self.find([group_id])[0]

    def by_name(self, name: str, network: str | None = None) -> Group:
        found = [g for g in self.find() if g.name == name and g.network == network]
        if not found:
            raise NotFound(f"the security group {name!r} does not exist", field="security_group")
        return found[0]

    def default(self, network: str | None) -> Group:
        """Every network (and the space outside networks) has a group named `default`, made
        when first needed: all egress, and ingress from its own members."""
        with self.store.tx() as s:
            row = s.scalar(select(SecurityGroupRow).where(
                SecurityGroupRow.name == "default", SecurityGroupRow.network.is_(None)
                if network is None else SecurityGroupRow.network == network))
            if row is None:
                gid = new_id("sg")
                row = SecurityGroupRow(id=gid, name="default", description="default group",
                                       network=network, egress=[dict(ALL_TRAFFIC)],
                                       ingress=[{**ALL_TRAFFIC, "cidrs": [], "groups": [gid]}],
                                       members=[])
                s.add(row)
                s.flush()
            return _view(row)

    def create(self, name: str, description: str, network: str | None) -> Group:
        if not name or len(name) > 255 or not description or len(description) > 255:
            raise InvalidInput("a security group needs a name and a description (1-255 "
                               "characters)", field="name" if not name else "description")
        if name.startswith("sg-"):
            raise InvalidInput("a group name cannot start with sg-", field="name")
        with self.store.tx() as s:
            clash = s.scalar(select(SecurityGroupRow.id).where(
                SecurityGroupRow.name == name, SecurityGroupRow.network.is_(None)
                if network is None else SecurityGroupRow.network == network))
            if clash or name == "default":
                raise Conflict(f"the security group {name!r} already exists",
                               field="security_group")
            row = SecurityGroupRow(id=new_id("sg"), name=name, description=description,
                                   network=network, ingress=[],
                                   egress=[dict(ALL_TRAFFIC)] if network else [], members=[])
            s.add(row)
            s.flush()
            self.events.emit("security_group.created", f"security group {name} ({row.id}) "
                             f"created; enforced {ENFORCED_WHERE}", subject=row.id, session=s)
            return _view(row)

    def delete(self, group_id: str) -> None:
        with self.store.tx() as s:
            row = s.get(SecurityGroupRow, group_id)
            if row is None:
                raise NotFound(f"the security group {group_id!r} does not exist",
                               field="security_group")
            if row.name == "default":
                raise Conflict("the default group cannot be deleted", field="default")
            if row.members:
                raise Conflict(f"security group {group_id} has instances "
                               f"({', '.join(row.members[:3])})", field="dependency")
            s.delete(row)

    def change(self, group_id: str, direction: str, rules: list[Rule], *, add: bool) -> Group:
        rules = [check_rule(r) for r in rules]
        with self.store.tx() as s:
            row = s.get(SecurityGroupRow, group_id)
            if row is None:
                raise NotFound(f"the security group {group_id!r} does not exist",
                               field="security_group")
            current: list[dict[str, Any]] = list(getattr(row, direction))
            for rule in rules:
                for g in rule.groups:
                    if s.get(SecurityGroupRow, g) is None:
                        raise NotFound(f"the security group {g!r} does not exist",
                                       field="security_group")
                d = rule.as_dict()
                if add and d in current:
                    raise Conflict("the rule already exists", field="duplicate")
                if not add and d not in current:
                    raise NotFound("the rule does not exist in this group", field="rule")
                current = [*current, d] if add else [x for x in current if x != d]
            setattr(row, direction, current)
            view = _view(row)
        self.changed()
        return view

    def join(self, instance_id: str, group_ids: list[str], location: str) -> None:
        with self.store.tx() as s:
            for gid in group_ids:
                row = s.get(SecurityGroupRow, gid)
                if row is None:
                    raise NotFound(f"the security group {gid!r} does not exist",
                                   field="security_group")
                row.members = [*row.members, instance_id] if instance_id not in row.members \
                    else row.members
                if (row.ingress or row.egress) and not self.enforced_at(location):
                    self.events.emit("security_group.not_enforced",
                                     f"instance {instance_id} at {location} joined {row.name} "
                                     f"({gid}); not enforced: {NOT_ENFORCED}", severity="warning",
                                     location=location, subject=instance_id, session=s)

    def drop_network(self, network: str) -> None:
        """The network is gone: so are its groups (the caller checked they are unused)."""
        with self.store.tx() as s:
            for row in s.scalars(select(SecurityGroupRow).where(
                    SecurityGroupRow.network == network)):
                s.delete(row)

        self.changed()

    def leave_all(self, instance_id: str) -> None:
        with self.store.tx() as s:
            leave_groups(s, instance_id)
        self.changed()

    def of(self, instance_id: str) -> list[Group]:
        return [g for g in self.find() if instance_id in g.members]


def leave_groups(s: Session, instance_id: str) -> None:
    """The instance out of every group it is in, in the caller's transaction (its destroy's:
    a destroyed instance left behind as a member kept its groups from being deleted)."""
    for row in s.scalars(select(SecurityGroupRow)):
        if instance_id in (row.members or []):
            row.members = [m for m in row.members if m != instance_id]


def egress_of(groups: list[Group]) -> list[dict[str, Any]] | None:
    """What an instance in these groups may open, as EC2 has it: the union of its groups'
    egress rules; None when that is everything. A group outside any network with no egress
    rules limits nothing (EC2-Classic's groups had no egress rules: all went out), so the
    default group of instances outside a VPC does not cut them off."""
    rules = [r for g in groups for r in (g.egress if g.network or g.egress else [ALL_TRAFFIC])]
    if any(r["protocol"] == "-1" and "0.0.0.0/0" in r["cidrs"] for r in rules):
        return None
    return rules


def _view(r: SecurityGroupRow) -> Group:
    return Group(r.id, r.name, r.description, r.network, list(r.ingress or []),
                 list(r.egress or []), list(r.members or []))


log = logging.getLogger(__name__)


class Enforcer:
    """Hands each enforcing location the ingress rules of its instances: after every change of
    a group or of its members, and now and then (an instance's port is known only once it
    runs). A location is told again only when its picture changed."""

    def __init__(self, groups: SecurityGroups, ops: Any) -> None:
        self.groups = groups
        self.ops = ops
        self._applied: dict[str, str] = {}
        self.failed: dict[str, str] = {}  # location -> why its last picture was not applied
        # instance -> locations that hold its rules besides its own: where an application's
        # move is taking it (deploy/applications.py), so they are in force before it runs there
        self.also_at: dict[str, set[str]] = {}

    def apply_all(self) -> None:
        from ..errors import OnepaneError
        from ..providers.base import Feature
        from .paging import every
        registry = self.ops.locations.registry
        enforcing = []
        for name in registry.names():
            try:
                if registry.get(name).capabilities.supports(Feature.firewall):
                    enforcing.append(name)
            except OnepaneError:
                continue
        if not enforcing:  # the common case: nothing to hand out, nothing to read
            return
        groups = self.groups.find()
        member_of: dict[str, list[Group]] = {}
        for g in groups:
            for m in g.members:
                member_of.setdefault(m, []).append(g)
        everyone = list(every(self.ops.instances.list_instances))  # once per pass
        peers_wanted = any(r["groups"] for g in groups for r in [*g.ingress, *g.egress])
        addresses = {i.id: i.addresses for i in everyone} if peers_wanted else {}

        def expanded(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """A rule naming groups also covers their members' addresses."""
            out = []
            for r in rules:
                peers = [f"{a}/32" for gid in r["groups"] for other in groups
                         if other.id == gid for m in other.members
                         for a in addresses.get(m, []) if ":" not in a]
                out.append({**r, "cidrs": sorted({*r["cidrs"], *peers})})
            return out
        arriving: dict[str, set[str]] = {}  # location -> instances on their way there
        for inst_id, to in self.ops.jobs.moving_to().items():
            arriving.setdefault(to, set()).add(inst_id)
        for inst_id, where in self.also_at.items():
            for loc in where:
                arriving.setdefault(loc, set()).add(inst_id)
        for name in enforcing:
            ingress: dict[str, list[dict[str, Any]]] = {}
            egress: dict[str, list[dict[str, Any]]] = {}
            coming = arriving.get(name, set())  # a live move keeps the VM's id and address
            here = [i for i in everyone if i.location == name or i.id in coming]
            for inst in here:
                if inst.id not in member_of or not inst.provider_id:
                    continue
                ingress[inst.provider_id] = expanded(
                    [r for g in member_of[inst.id] for r in g.ingress])
                out = egress_of(member_of[inst.id])
                if out is not None:
                    egress[inst.provider_id] = expanded(out)
            try:
                epoch = registry.get(name).enforcement_epoch()
            except OnepaneError:
                epoch = ""
            picture = repr((sorted(ingress.items()), sorted(egress.items()),
                            sorted((g.id, g.ingress, g.egress) for g in groups), epoch))
            if self._applied.get(name) == picture:
                continue
            try:
                own = {g.id: {"ingress": g.ingress, "egress": egress_of([g]) or [ALL_TRAFFIC]}
                       for g in groups}
                registry.run(name, lambda p, ing=ingress, o=own, eg=egress: p.enforce(
                    ing, o, egress=eg), timeout=10)
                self._applied[name] = picture
                self.failed.pop(name, None)
            except OnepaneError as exc:
                self.failed[name] = exc.detail
                log.warning("security groups at %s: %s", name, exc.detail)
