"""The OCCI entities onepane renders, built from its inventory records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...model import Instance, InstanceState, Network, Volume
from .categories import (
    ACTIONS,
    INFRA,
    KINDS,
    MIXINS,
    NI_MIXIN,
    ONEPANE,
    Category,
    Templates,
    action_scheme,
    term_of,
)

COMPUTE_STATE = {InstanceState.running: "active", InstanceState.rebooting: "active",
                 InstanceState.stopped: "inactive", InstanceState.pending: "inactive",
                 InstanceState.error: "error", InstanceState.missing: "error",
                 InstanceState.unknown: "inactive"}


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

    @property
    def title(self) -> str:
        return str(self.attributes.get("occi.core.title", ""))


def _core(eid: str, title: str) -> dict[str, Any]:
    return {"occi.core.id": eid, "occi.core.title": title}


def compute(inst: Instance, tpl: Templates, vols: list[Volume]) -> Entity:
    state = COMPUTE_STATE.get(inst.state, "inactive")
    attrs = {**_core(inst.id, inst.name), "occi.compute.hostname": inst.name,
             "occi.compute.architecture": "x64", "occi.compute.state": state}
    size = tpl.resource.get(_tpl_id(inst.location, inst.size, "resource_tpl"))
    if size is not None:
        attrs.update(_size_attrs(tpl, size.id))
    if inst.state == InstanceState.error:
        attrs["occi.compute.state.message"] = "the instance's process or VM failed"
    mixins = [m for m in (tpl.locations.get(_loc_id(inst.location)),
                          tpl.os.get(_tpl_id(inst.location, inst.image, "os_tpl")), size) if m]
    acts = {"active": ("stop", "restart", "suspend"), "inactive": ("start",)}.get(state, ("start",))
    ent = Entity(inst.id, KINDS["compute"], f"compute/{inst.id}", attrs, mixins,
                 [ACTIONS[action_scheme("compute") + a] for a in acts])
    if inst.network:
        ent.links.append(networkinterface(inst))
    ent.links.extend(storagelink(v) for v in vols if v.attached_to == inst.id)
    return ent


def networkinterface(inst: Instance) -> Entity:
    attrs: dict[str, Any] = {**_core(inst.id, f"{inst.name} on {inst.network}"),
                             "occi.core.source": f"compute/{inst.id}",
                             "occi.core.target": f"network/{inst.network}",
                             "occi.networkinterface.interface": "eth0",
                             "occi.networkinterface.state": "active"}
    mixins = []
    if inst.addresses:
        attrs["occi.networkinterface.address"] = inst.addresses[0]
        mixins.append(MIXINS[NI_MIXIN + "ipnetworkinterface"])
    return Entity(inst.id, KINDS["networkinterface"], f"networkinterface/{inst.id}", attrs, mixins,
                  source=(f"compute/{inst.id}", INFRA + "compute"),
                  target=(f"network/{inst.network}", INFRA + "network"))


def storage(vol: Volume, tpl: Templates) -> Entity:
    state = {"available": "online", "in-use": "online", "creating": "offline"}.get(vol.state, "error")
    attrs = {**_core(vol.id, vol.name), "occi.storage.size": float(vol.size_gb),
             "occi.storage.state": state}
    mixins = [m for m in (tpl.locations.get(_loc_id(vol.location)),) if m]
    return Entity(vol.id, KINDS["storage"], f"storage/{vol.id}", attrs, mixins)


def storagelink(vol: Volume, state: str = "active") -> Entity:
    attrs = {**_core(vol.id, f"{vol.name} on {vol.attached_to}"),
             "occi.core.source": f"compute/{vol.attached_to}", "occi.core.target": f"storage/{vol.id}",
             "occi.storagelink.deviceid": vol.device or "", "occi.storagelink.state": state}
    return Entity(vol.id, KINDS["storagelink"], f"storagelink/{vol.id}", attrs,
                  source=(f"compute/{vol.attached_to}", INFRA + "compute"),
                  target=(f"storage/{vol.id}", INFRA + "storage"))


def network(net: Network, tpl: Templates) -> Entity:
    attrs: dict[str, Any] = {**_core(net.id, net.name), "occi.network.label": net.name,
                             "occi.network.state": "active" if net.state == "available" else "inactive"}
    mixins = [m for m in (tpl.locations.get(_loc_id(net.location)),) if m]
    if net.cidr:
        attrs["occi.network.address"] = net.cidr
        attrs["occi.network.allocation"] = "static"
        mixins.append(MIXINS["http://schemas.ogf.org/occi/infrastructure/network#ipnetwork"])
    return Entity(net.id, KINDS["network"], f"network/{net.id}", attrs, mixins)


def _loc_id(location: str) -> str:
    return f"{ONEPANE}location#{location}"


def _tpl_id(location: str, native: str, which: str) -> str:
    return f"{ONEPANE}{location}/{which}#{term_of(native)}"


def _size_attrs(tpl: Templates, mixin_id: str) -> dict[str, Any]:
    return dict(tpl.size_attrs.get(mixin_id, {}))
