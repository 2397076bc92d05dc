"""OCCI 1.2's categories as onepane serves them: the Core and Infrastructure kinds, their
actions and mixins, and onepane's own mixins (one os_tpl per image, one resource_tpl per size,
one per location) generated from the inventory."""

from __future__ import annotations

from dataclasses import dataclass, field

CORE = "http://schemas.ogf.org/occi/core#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
NET_MIXIN = "http://schemas.ogf.org/occi/infrastructure/network#"
NI_MIXIN = "http://schemas.ogf.org/occi/infrastructure/networkinterface#"
ONEPANE = "http://onepane.dev/occi/"


def action_scheme(kind: str) -> str:
    return f"http://schemas.ogf.org/occi/infrastructure/{kind}/action#"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "string"  # string | number | boolean | enum
    mutable: bool = False
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Category:
    term: str
    scheme: str
    cls: str  # kind | mixin | action
    title: str = ""
    parent: str | None = None  # kinds: rel; mixins: what they depend on
    applies: tuple[str, ...] = ()  # mixins: kinds they apply to
    location: str | None = None  # path of the collection, relative to the OCCI root
    attributes: tuple[Attribute, ...] = ()
    actions: tuple[str, ...] = ()  # scheme+term of actions

    @property
    def id(self) -> str:
        return self.scheme + self.term


def _a(*names: str, **kw: bool) -> tuple[Attribute, ...]:
    return tuple(Attribute(n, **kw) for n in names)  # type: ignore[arg-type]


ENTITY_ATTRS = (Attribute("occi.core.id", required=False), Attribute("occi.core.title", mutable=True))
RESOURCE_ATTRS = (Attribute("occi.core.summary", mutable=True),)
LINK_ATTRS = (Attribute("occi.core.source", required=True), Attribute("occi.core.target", required=True))

ACTIONS: dict[str, Category] = {}
for kind, terms in {"compute": ("start", "stop", "restart", "suspend"),
                    "storage": ("online", "offline", "backup", "snapshot", "resize"),
                    "network": ("up", "down")}.items():
    for term in terms:
        act = Category(term, action_scheme(kind), "action", f"{term} the {kind}")
        ACTIONS[act.id] = act

KINDS: dict[str, Category] = {c.term: c for c in [
    Category("entity", CORE, "kind", "Entity", attributes=ENTITY_ATTRS),
    Category("resource", CORE, "kind", "Resource", parent=CORE + "entity", attributes=RESOURCE_ATTRS),
    Category("link", CORE, "kind", "Link", parent=CORE + "entity", attributes=LINK_ATTRS),
    Category("compute", INFRA, "kind", "Compute resource", parent=CORE + "resource",
             location="compute/", actions=tuple(a for a in ACTIONS if "/compute/" in a),
             attributes=(Attribute("occi.compute.architecture"),
                         Attribute("occi.compute.cores", "number"),
                         Attribute("occi.compute.hostname", mutable=True),
                         Attribute("occi.compute.memory", "number", description="GiB"),
                         Attribute("occi.compute.state", "enum", description="active, inactive, "
                                   "suspended, error"),
                         Attribute("occi.compute.state.message"))),
    Category("storage", INFRA, "kind", "Storage resource", parent=CORE + "resource",
             location="storage/", actions=tuple(a for a in ACTIONS if "/storage/" in a),
             attributes=(Attribute("occi.storage.size", "number", required=True, description="GiB"),
                         Attribute("occi.storage.state", "enum", description="online, offline, "
                                   "error"),
                         Attribute("occi.storage.state.message"))),
    Category("network", INFRA, "kind", "Network resource", parent=CORE + "resource",
             location="network/", actions=tuple(a for a in ACTIONS if "/network/" in a),
             attributes=(Attribute("occi.network.vlan", "number"),
                         Attribute("occi.network.label", mutable=True),
                         Attribute("occi.network.state", "enum", description="active, inactive, "
                                   "error"),
                         Attribute("occi.network.state.message"))),
    Category("networkinterface", INFRA, "kind", "Network interface link", parent=CORE + "link",
             location="networkinterface/",
             attributes=(Attribute("occi.networkinterface.interface"),
                         Attribute("occi.networkinterface.mac"),
                         Attribute("occi.networkinterface.state", "enum"))),
    Category("storagelink", INFRA, "kind", "Storage link", parent=CORE + "link",
             location="storagelink/",
             attributes=(Attribute("occi.storagelink.deviceid", mutable=True),
                         Attribute("occi.storagelink.mountpoint"),
                         Attribute("occi.storagelink.state", "enum"))),
]}
KIND_BY_ID = {k.id: k for k in KINDS.values()}

MIXINS: dict[str, Category] = {c.id: c for c in [
    Category("os_tpl", INFRA, "mixin", "Operating system template", applies=(INFRA + "compute",)),
    Category("resource_tpl", INFRA, "mixin", "Resource template", applies=(INFRA + "compute",)),
    Category("ipnetwork", NET_MIXIN, "mixin", "IP network", applies=(INFRA + "network",),
             attributes=(Attribute("occi.network.address"), Attribute("occi.network.gateway"),
                         Attribute("occi.network.allocation", "enum"))),
    Category("ipnetworkinterface", NI_MIXIN, "mixin", "IP network interface",
             applies=(INFRA + "networkinterface",),
             attributes=(Attribute("occi.networkinterface.address"),
                         Attribute("occi.networkinterface.gateway"),
                         Attribute("occi.networkinterface.allocation", "enum"))),
    Category("location", ONEPANE, "mixin", "onepane location (data center or cloud region)",
             applies=(INFRA + "compute", INFRA + "storage", INFRA + "network")),
]}


@dataclass
class Templates:
    """The inventory's images, sizes and locations as mixins, built per request."""

    os: dict[str, Category] = field(default_factory=dict)  # id -> mixin
    resource: dict[str, Category] = field(default_factory=dict)
    locations: dict[str, Category] = field(default_factory=dict)
    # id -> (location, native image or size id)
    native: dict[str, tuple[str, str]] = field(default_factory=dict)
    size_attrs: dict[str, dict[str, float]] = field(default_factory=dict)  # occi.compute.cores...
    default_size: dict[str, str] = field(default_factory=dict)  # location -> its smallest size

    def all(self) -> list[Category]:
        return [*self.locations.values(), *self.os.values(), *self.resource.values()]


def term_of(native: str) -> str:
    """OCCI terms are [a-z][a-z0-9_-]*: `t2.micro` becomes `t2_micro`."""
    out = "".join(c if c.isalnum() or c in "-_" else "_" for c in native.lower())
    return out if out[:1].isalpha() else "x" + out


def os_tpl(location: str, image: str, title: str) -> Category:
    return Category(term_of(image), f"{ONEPANE}{location}/os_tpl#", "mixin", title,
                    parent=INFRA + "os_tpl", applies=(INFRA + "compute",))


def resource_tpl(location: str, size: str, title: str) -> Category:
    return Category(term_of(size), f"{ONEPANE}{location}/resource_tpl#", "mixin", title,
                    parent=INFRA + "resource_tpl", applies=(INFRA + "compute",))


def location_mixin(name: str, title: str) -> Category:
    return Category(name, ONEPANE + "location#", "mixin", title, parent=ONEPANE + "location",
                    applies=(INFRA + "compute", INFRA + "storage", INFRA + "network"))
