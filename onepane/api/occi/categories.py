"""OCCI 1.2's categories as onepane serves them: the Core and Infrastructure kinds, their
actions and mixins, and onepane's own mixins (one os_tpl per image, one resource_tpl per size,
one per location) generated from the inventory.

Every kind and mixin has a location (its collection, a path below the OCCI root ending in
"/"), as GFD.223 requires of categories that entities can belong to. Attribute types follow
GFD.221/224 (Integer, Float, String, Enum, Boolean) and are enforced on create and update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CORE = "http://schemas.ogf.org/occi/core#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
NET_MIXIN = "http://schemas.ogf.org/occi/infrastructure/network#"
NI_MIXIN = "http://schemas.ogf.org/occi/infrastructure/networkinterface#"
ONEPANE = "http://onepane.dev/occi/"
ONEPANE_SCHEME = "http://onepane.dev/occi#"  # onepane's own kinds of mixin

COMPUTE_STATES = ("active", "inactive", "suspended", "error")
STORAGE_STATES = ("online", "offline", "error")
NETWORK_STATES = ("active", "inactive", "error")
LINK_STATES = ("active", "inactive", "error")


def action_scheme(kind: str) -> str:
    return f"http://schemas.ogf.org/occi/infrastructure/{kind}/action#"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "string"  # string | integer | float | boolean | enum
    mutable: bool = False
    required: bool = False
    description: str = ""
    values: tuple[str, ...] = ()  # enum values

    @property
    def json_type(self) -> str:
        """GFD.226 types attributes with JSON's types: an Integer is a number there."""
        return {"integer": "number", "float": "number", "enum": "string"}.get(self.type, self.type)


@dataclass(frozen=True)
class Category:
    term: str
    scheme: str
    cls: str  # kind | mixin | action
    title: str = ""
    parent: str | None = None  # kinds: their parent kind; mixins: the mixin they depend on
    applies: tuple[str, ...] = ()  # mixins: kinds they apply to
    location: str | None = None  # path of the collection, relative to the OCCI root
    attributes: tuple[Attribute, ...] = ()
    actions: tuple[str, ...] = ()  # scheme+term of actions
    user: bool = False  # a mixin a client defined (and may delete)

    @property
    def id(self) -> str:
        return self.scheme + self.term


ENTITY_ATTRS = (Attribute("occi.core.id", required=True, description="assigned by onepane"),
                Attribute("occi.core.title", mutable=True))
RESOURCE_ATTRS = (Attribute("occi.core.summary", mutable=True),)
LINK_ATTRS = (Attribute("occi.core.source", required=True), Attribute("occi.core.target", required=True))

ACTIONS: dict[str, Category] = {}
for kind, terms in {"compute": ("start", "stop", "restart", "suspend"),
                    "storage": ("online", "offline", "backup", "snapshot", "resize"),
                    "network": ("up", "down")}.items():
    for term in terms:
        title = f"{term} the {kind}"
        if term == "suspend":
            title = "suspend the compute (VM locations pause it, process locations stop it)"
        act = Category(term, action_scheme(kind), "action", title)
        ACTIONS[act.id] = act

KINDS: dict[str, Category] = {c.term: c for c in [
    Category("entity", CORE, "kind", "Entity", location="entity/", attributes=ENTITY_ATTRS),
    Category("resource", CORE, "kind", "Resource", parent=CORE + "entity", location="resource/",
             attributes=RESOURCE_ATTRS),
    Category("link", CORE, "kind", "Link", parent=CORE + "entity", location="link/",
             attributes=LINK_ATTRS),
    Category("compute", INFRA, "kind", "Compute resource", parent=CORE + "resource",
             location="compute/", actions=tuple(a for a in ACTIONS if "/compute/" in a),
             attributes=(Attribute("occi.compute.architecture", "enum", values=("x86", "x64")),
                         Attribute("occi.compute.cores", "integer",
                                   description="CPU cores; fractional vCPUs round up"),
                         Attribute("occi.compute.share", "integer"),
                         Attribute("occi.compute.hostname", mutable=True),
                         Attribute("occi.compute.speed", "float", description="GHz"),
                         Attribute("occi.compute.memory", "float", description="GiB"),
                         Attribute("occi.compute.state", "enum", values=COMPUTE_STATES),
                         Attribute("occi.compute.state.message"))),
    Category("storage", INFRA, "kind", "Storage resource", parent=CORE + "resource",
             location="storage/", actions=tuple(a for a in ACTIONS if "/storage/" in a),
             attributes=(Attribute("occi.storage.size", "float", required=True,
                                   description="GiB (rounded up to whole GiB)"),
                         Attribute("occi.storage.state", "enum", values=STORAGE_STATES),
                         Attribute("occi.storage.state.message"))),
    Category("network", INFRA, "kind", "Network resource", parent=CORE + "resource",
             location="network/", actions=tuple(a for a in ACTIONS if "/network/" in a),
             attributes=(Attribute("occi.network.vlan", "integer"),
                         Attribute("occi.network.label"),
                         Attribute("occi.network.state", "enum", values=NETWORK_STATES),
                         Attribute("occi.network.state.message"))),
    Category("networkinterface", INFRA, "kind", "Network interface link", parent=CORE + "link",
             location="networkinterface/",
             attributes=(Attribute("occi.networkinterface.interface"),
                         Attribute("occi.networkinterface.mac"),
                         Attribute("occi.networkinterface.state", "enum", values=LINK_STATES),
                         Attribute("occi.networkinterface.state.message"))),
    Category("storagelink", INFRA, "kind", "Storage link", parent=CORE + "link",
             location="storagelink/",
             attributes=(Attribute("occi.storagelink.deviceid"),
                         Attribute("occi.storagelink.mountpoint"),
                         Attribute("occi.storagelink.state", "enum", values=LINK_STATES),
                         Attribute("occi.storagelink.state.message"))),
]}
KIND_BY_ID = {k.id: k for k in KINDS.values()}
RESOURCE_KINDS = ("compute", "storage", "network")
LINK_KINDS = ("networkinterface", "storagelink")

MIXINS: dict[str, Category] = {c.id: c for c in [
    Category("os_tpl", INFRA, "mixin", "Operating system template", applies=(INFRA + "compute",),
             location="mixin/os_tpl/"),
    Category("resource_tpl", INFRA, "mixin", "Resource template", applies=(INFRA + "compute",),
             location="mixin/resource_tpl/"),
    Category("ipnetwork", NET_MIXIN, "mixin", "IP network", applies=(INFRA + "network",),
             location="mixin/ipnetwork/",
             attributes=(Attribute("occi.network.address"), Attribute("occi.network.gateway"),
                         Attribute("occi.network.allocation", "enum",
                                   values=("dynamic", "static")))),
    Category("ipnetworkinterface", NI_MIXIN, "mixin", "IP network interface",
             applies=(INFRA + "networkinterface",), location="mixin/ipnetworkinterface/",
             attributes=(Attribute("occi.networkinterface.address"),
                         Attribute("occi.networkinterface.gateway"),
                         Attribute("occi.networkinterface.allocation", "enum",
                                   values=("dynamic", "static")))),
    Category("location", ONEPANE_SCHEME, "mixin", "onepane location (data center or cloud region)",
             applies=(INFRA + "compute", INFRA + "storage", INFRA + "network"),
             location="mixin/location/"),
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
    default_os: dict[str, str] = field(default_factory=dict)  # location -> an os_tpl id there

    def all(self) -> list[Category]:
        """Grouped by location, so that the first os_tpl and the first resource_tpl a client
        meets belong together."""
        return [*self.locations.values(), *sorted(
            [*self.os.values(), *self.resource.values()],
            key=lambda c: (self.native[c.id][0], c.parent or "", c.term))]


def term_of(native: str) -> str:
    """OCCI terms are [a-z][a-z0-9_-]*: `t2.micro` becomes `t2_micro`."""
    out = "".join(c if c.isalnum() or c in "-_" else "_" for c in native.lower())
    return out if out[:1].isalpha() else "x" + out


def os_tpl(location: str, image: str, title: str) -> Category:
    return Category(term_of(image), f"{ONEPANE}{location}/os_tpl#", "mixin", title,
                    parent=INFRA + "os_tpl", applies=(INFRA + "compute",),
                    location=f"mixin/{location}/os_tpl/{term_of(image)}/")


def resource_tpl(location: str, size: str, title: str) -> Category:
    return Category(term_of(size), f"{ONEPANE}{location}/resource_tpl#", "mixin", title,
                    parent=INFRA + "resource_tpl", applies=(INFRA + "compute",),
                    location=f"mixin/{location}/resource_tpl/{term_of(size)}/")


def location_mixin(name: str, title: str) -> Category:
    return Category(name, ONEPANE + "location#", "mixin", title, parent=ONEPANE_SCHEME + "location",
                    applies=(INFRA + "compute", INFRA + "storage", INFRA + "network"),
                    location=f"mixin/location/{name}/")
