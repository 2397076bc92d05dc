"""The OCCI entities onepane renders, built from its inventory records and the annotations a
client added (title, summary, user mixins). Every entity has its own id: a link's id is its
resource's with a suffix (`inst-…-nic0`, `vol-…-link`), never the id of another entity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...inventory.annotations import Annotation
from ...model import Instance, InstanceState, Network, Volume
from .categories import (
    ACTIONS,
    INFRA,
    KINDS,
    MIXINS,
    NET_MIXIN,
    NI_MIXIN,
    ONEPANE,
    Category,
    Templates,
    action_scheme,
    term_of,
)

COMPUTE_STATE = {InstanceState.running: "active", InstanceState.rebooting: "active",
                 InstanceState.stopped: "inactive", InstanceState.pending: "inactive",
                 InstanceState.suspended: "suspended",
                 InstanceState.error: "error", InstanceState.missing: "error",
                 InstanceState.unknown: "inactive"}
NIC_SUFFIX, LINK_SUFFIX = "-nic0", "-link"
ALIAS = "path:"  # annotation key of a client-chosen path: path:compute/my-vm -> inst-...
NO_NOTES = Annotation({}, [])


class OcciError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Entity:
    id: str
    kind: Category
    location: str  # path relative to the OCCI root, e.g. compute/inst-0193...
    attributes: dict[str, Any]
    mixins: list[Category] = field(default_factory=list)
    actions: list[Category] = field(default_factory=list)
    links: list[Entity] = field(default_factory=list)
    source: tuple[str, str] | None = None  # links: (location, kind id)
    target: tuple[str, str] | None = None
    resource: str = ""  # the onepane resource behind it (inst-..., vol-..., net-...)
    key: str = ""  # what its annotations are kept under: its own id as onepane made it
    alias: str | None = None  # the path a client created it at with PUT, if it did

    def __post_init__(self) -> None:
        self.key = self.key or self.id

    @property
    def title(self) -> str:
        return str(self.attributes.get("occi.core.title", ""))


@dataclass
class Context:
    """What building entities needs besides the record: templates and client annotations."""

    tpl: Templates
    notes: dict[str, Annotation] = field(default_factory=dict)
    user_mixins: dict[str, Category] = field(default_factory=dict)

    def annotate(self, e: Entity, key: str) -> Entity:
        note = self.notes.get(key, NO_NOTES)
        e.attributes.update({k: v for k, v in note.attributes.items() if k.startswith("occi.")})
        e.mixins += [self.user_mixins[c] for c in note.categories if c in self.user_mixins]
        if alias := note.attributes.get("_path"):  # created with PUT at a path of the client's
            e.alias, e.location = str(alias), str(alias)
            e.id = e.attributes["occi.core.id"] = str(alias).rsplit("/", 1)[1]
        return e


def _core(eid: str, title: str) -> dict[str, Any]:
    return {"occi.core.id": eid, "occi.core.title": title}


def compute(inst: Instance, ctx: Context, vols: list[Volume]) -> Entity:
    tpl = ctx.tpl
    state = COMPUTE_STATE.get(inst.state, "inactive")
    attrs = {**_core(inst.id, inst.name), "occi.compute.hostname": inst.name,
             "occi.compute.architecture": "x64", "occi.compute.state": state}
    size = tpl.resource.get(_tpl_id(inst.location, inst.size, "resource_tpl"))
    if size is not None:
        attrs.update(tpl.size_attrs.get(size.id, {}))
    if inst.state == InstanceState.error:
        attrs["occi.compute.state.message"] = "the instance's process or VM failed"
    mixins = [m for m in (tpl.locations.get(_loc_id(inst.location)),
                          tpl.os.get(_tpl_id(inst.location, inst.image, "os_tpl")), size) if m]
    acts = {"active": ("stop", "restart", "suspend"), "inactive": ("start",),
            "suspended": ("start", "stop")}.get(state, ("start",))
    ent = Entity(inst.id, KINDS["compute"], f"compute/{inst.id}", attrs, mixins,
                 [ACTIONS[action_scheme("compute") + a] for a in acts], resource=inst.id)
    ctx.annotate(ent, inst.id)
    if inst.network:
        ent.links.append(networkinterface(inst, ctx))
    ent.links.extend(storagelink(v, ctx) for v in vols if v.attached_to == inst.id)
    return ent


def networkinterface(inst: Instance, ctx: Context) -> Entity:
    nid = inst.id + NIC_SUFFIX
    attrs: dict[str, Any] = {**_core(nid, f"{inst.name} on {inst.network}"),
                             "occi.core.source": f"compute/{inst.id}",
                             "occi.core.target": f"network/{inst.network}",
                             "occi.networkinterface.interface": "eth0",
                             "occi.networkinterface.state": "active"}
    mixins = []
    if inst.addresses:
        attrs["occi.networkinterface.address"] = inst.addresses[0]
        mixins.append(MIXINS[NI_MIXIN + "ipnetworkinterface"])
    e = Entity(nid, KINDS["networkinterface"], f"networkinterface/{nid}", attrs, mixins,
               source=(f"compute/{inst.id}", INFRA + "compute"),
               target=(f"network/{inst.network}", INFRA + "network"), resource=inst.id)
    return ctx.annotate(e, nid)


def storage(vol: Volume, ctx: Context) -> Entity:
    state = {"available": "online", "in-use": "online", "creating": "offline"}.get(vol.state, "error")
    attrs = {**_core(vol.id, vol.name), "occi.storage.size": float(vol.size_gb),
             "occi.storage.state": state}
    mixins = [m for m in (ctx.tpl.locations.get(_loc_id(vol.location)),) if m]
    e = Entity(vol.id, KINDS["storage"], f"storage/{vol.id}", attrs, mixins, resource=vol.id)
    return ctx.annotate(e, vol.id)


def storagelink(vol: Volume, ctx: Context, state: str = "active") -> Entity:
    lid = vol.id + LINK_SUFFIX
    attrs = {**_core(lid, f"{vol.name} on {vol.attached_to}"),
             "occi.core.source": f"compute/{vol.attached_to}", "occi.core.target": f"storage/{vol.id}",
             "occi.storagelink.deviceid": vol.device or "", "occi.storagelink.state": state}
    e = Entity(lid, KINDS["storagelink"], f"storagelink/{lid}", attrs,
               source=(f"compute/{vol.attached_to}", INFRA + "compute"),
               target=(f"storage/{vol.id}", INFRA + "storage"), resource=vol.id)
    return ctx.annotate(e, lid)


def network(net: Network, ctx: Context) -> Entity:
    attrs: dict[str, Any] = {**_core(net.id, net.name), "occi.network.label": net.name,
                             "occi.network.state": "active" if net.state == "available" else "inactive"}
    mixins = [m for m in (ctx.tpl.locations.get(_loc_id(net.location)),) if m]
    if net.cidr:
        attrs["occi.network.address"] = net.cidr
        attrs["occi.network.allocation"] = "static"
        mixins.append(MIXINS[NET_MIXIN + "ipnetwork"])
    e = Entity(net.id, KINDS["network"], f"network/{net.id}", attrs, mixins, resource=net.id)
    return ctx.annotate(e, net.id)


def _loc_id(location: str) -> str:
    return f"{ONEPANE}location#{location}"


def _tpl_id(location: str, native: str, which: str) -> str:
    return f"{ONEPANE}{location}/{which}#{term_of(native)}"
