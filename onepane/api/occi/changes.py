"""What OCCI requests change: creating entities (POST to a kind's collection), updating them
(POST partial, PUT full), actions, deletion, and the mixins a client defines and tags with.
Each change goes through onepane's operations and waits (bounded) for its job, so that the
reply describes the entity as it now is."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

from ...errors import Conflict, NotFound, OnepaneError
from ...inventory.annotations import CategoryDef
from ...inventory.paging import every
from ...model import InstanceCreate, NetworkCreate, VolumeAttach, VolumeCreate, slug
from ...providers.base import Feature
from . import attributes
from .categories import (
    ACTIONS,
    CORE,
    KINDS,
    MIXINS,
    NET_MIXIN,
    Category,
    action_scheme,
)
from .entities import ALIAS, LINK_SUFFIX, NIC_SUFFIX, Entity, OcciError
from .parse import Parsed
from .views import Model

DEFAULT_DEVICE = "/dev/vdb"
COMPUTE_ACTIONS = {"start": "start", "stop": "stop", "restart": "reboot", "suspend": "stop"}
# the state each compute action leaves, for the no-op check: asking for it again is fine
COMPUTE_ENDS = {"start": "active", "stop": "inactive", "suspend": "suspended"}
MUTABLE_NOTES = ("occi.core.title", "occi.core.summary", "occi.compute.hostname")
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$")
LOCATION_PATH = re.compile(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/$")


# ---- create -----------------------------------------------------------------------------------

def create(m: Model, collection: Category, p: Parsed) -> Entity:
    if p.actions:
        raise OcciError(400, "an action category in a creation request; invoke actions with "
                        "POST <entity>?action=<term>")
    kind = _kind(p, collection)
    mixins = _mixins(m, p)
    values = attributes.check(p.attributes, _defs(kind, mixins), f"kind {kind.term!r} or its mixins")
    values.pop("occi.core.id", None)  # onepane assigns ids (GFD.223: the server picks the location)
    make = {"compute": _compute, "storage": _storage, "network": _network,
            "storagelink": _storagelink, "networkinterface": _networkinterface}.get(kind.term)
    if make is None:
        raise OcciError(400, f"kind {kind.term!r} is abstract; create a compute, storage, "
                        "network, storagelink or networkinterface")
    e = make(m, p, values, mixins)
    notes = {k: v for k, v in values.items() if k in MUTABLE_NOTES}
    user = [c.id for c in mixins if c.user]
    if notes or user:
        m.call.core.annotations.put(e.key, notes, user)
        m.refresh()
        e = m.entity(kind.term, e.key)
    return e


def create_at(m: Model, kind: Category, client_id: str, p: Parsed) -> Entity:
    """PUT to a path that names nothing yet: create there (GFD.223). onepane makes the
    resource with its own id and remembers the client's path as the entity's location."""
    if not CLIENT_ID.match(client_id):
        raise OcciError(400, f"{client_id!r}: a path segment of letters, digits and . _ ~ - "
                        "(at most 64) names an entity")
    e = create(m, kind, p)
    path = f"{kind.term}/{client_id}"
    m.call.core.annotations.put(ALIAS + path, {"key": e.key}, [])
    note = m.call.core.annotations.get(e.key)
    m.call.core.annotations.put(e.key, {**note.attributes, "_path": path}, note.categories)
    m.refresh()
    return m.entity(kind.term, client_id)


def _kind(p: Parsed, collection: Category) -> Category:
    if len(p.kinds) != 1:
        if not p.kinds and collection.cls == "kind":
            return collection  # the collection says which kind
        raise OcciError(400, f"a creation request names exactly one kind, not {len(p.kinds)}")
    kind = next((k for k in KINDS.values() if k.id == p.kinds[0]), None)
    if kind is None:
        raise OcciError(400, f"unknown kind {p.kinds[0]!r}; GET /occi/-/ lists the kinds")
    if collection.cls == "kind" and kind.id != collection.id:
        raise OcciError(400, f"kind {kind.term!r} cannot be created in the "
                        f"{collection.term}/ collection")
    return kind


def _mixins(m: Model, p: Parsed) -> list[Category]:
    out = []
    for mid in p.mixins:
        c = m.category(mid)
        if c is None or c.cls != "mixin":
            raise OcciError(400, f"unknown mixin {mid!r}; GET /occi/-/ lists the mixins")
        out.append(c)
    return out


def _defs(kind: Category, mixins: list[Category]) -> dict[str, attributes.Attribute]:
    chain = [kind, KINDS["entity"]]
    chain.append(KINDS["link"] if kind.parent == CORE + "link" else KINDS["resource"])
    return attributes.definitions(*chain, *mixins, *[MIXINS[c.parent] for c in mixins
                                                     if c.parent in MIXINS])


def _location(m: Model, mixins: list[Category]) -> str | None:
    locs = [m.tpl.native[c.id][0] for c in mixins if c.id in m.tpl.locations]
    return locs[0] if locs else None


def _name(values: dict[str, Any], fallback: str) -> str:
    raw = values.get("occi.core.title") or values.get("occi.compute.hostname") \
        or values.get("occi.network.label")
    return slug(str(raw) if raw else None) or fallback


def _compute(m: Model, p: Parsed, values: dict[str, Any], mixins: list[Category]) -> Entity:
    tpl = m.tpl
    os_tpls = [tpl.native[c.id] for c in mixins if c.id in tpl.os]
    res_tpls = [tpl.native[c.id] for c in mixins if c.id in tpl.resource]
    if len(os_tpls) > 1 or len(res_tpls) > 1:
        raise OcciError(400, "a compute takes at most one os_tpl and one resource_tpl mixin")
    templates = [*os_tpls, *res_tpls]
    loc = _location(m, mixins) or (templates[0][0] if templates else None) \
        or m.call.core.locations.default()
    if not os_tpls:  # GFD.224 does not require one: the location's first image
        if loc not in tpl.default_os:
            raise OcciError(400, f"location {loc} offers no image; give an os_tpl mixin "
                            "(GET /occi/-/ lists them)")
        os_tpls = [tpl.native[tpl.default_os[loc]]]
    for where, what in [*os_tpls, *res_tpls]:
        if where != loc:
            raise OcciError(400, f"template {what!r} belongs to location {where!r}, not {loc!r}")
    size = _size(m, loc, res_tpls[0][1] if res_tpls else None, values)
    links = [link for link in p.links if link.rel not in ACTIONS]
    network = None
    volumes = []
    for link in links:
        target = m.by_url(link.target)
        if target.kind.term == "network":
            network = target.resource
        elif target.kind.term == "storage":
            volumes.append((target.resource, str(link.attributes.get("occi.storagelink.deviceid")
                                          or DEFAULT_DEVICE)))
        else:
            raise OcciError(400, f"a compute links to networks and storage, not {link.target!r}")
    job = m.call.settle(m.ops.instances.create_instance(InstanceCreate(
        name=_name(values, "occi-compute"), location=loc, image=os_tpls[0][1], size=size,
        network=network)))
    inst_id = job.target or ""
    for vol, device in volumes:
        m.call.settle(m.ops.volumes.attach_volume(vol, VolumeAttach(instance=inst_id, device=device)))
    return m.entity("compute", inst_id)


def _size(m: Model, loc: str, chosen: str | None, values: dict[str, Any]) -> str:
    """The resource_tpl given, or the smallest size at `loc` that has the cores and memory
    asked for; a template that has less than asked for, or no size that fits, is a 400."""
    cores, memory = values.get("occi.compute.cores"), values.get("occi.compute.memory")
    sizes = {m.tpl.native[c.id][1]: m.tpl.size_attrs.get(c.id, {})
             for c in m.tpl.resource.values() if m.tpl.native[c.id][0] == loc}

    def fits(attrs: dict[str, float]) -> bool:
        return (cores is None or attrs.get("occi.compute.cores", 0) >= cores) and \
               (memory is None or attrs.get("occi.compute.memory", 0) >= memory)
    if chosen is not None:
        if not fits(sizes.get(chosen, {})):
            raise OcciError(400, f"resource_tpl {chosen} has {sizes.get(chosen)}, less than "
                            "occi.compute.cores/occi.compute.memory ask for")
        return chosen
    if cores is None and memory is None:
        if loc not in m.tpl.default_size:
            raise OcciError(400, f"location {loc} lists no sizes; give a resource_tpl mixin")
        return m.tpl.default_size[loc]
    fitting = sorted((a.get("occi.compute.memory", 0), a.get("occi.compute.cores", 0), s)
                     for s, a in sizes.items() if fits(a))
    if not fitting:
        raise OcciError(400, f"no size at {loc} has occi.compute.cores={cores} and "
                        f"occi.compute.memory={memory} GiB; GET /occi/-/ lists the "
                        "resource_tpl mixins with theirs")
    return fitting[0][2]


def _storage(m: Model, p: Parsed, values: dict[str, Any], mixins: list[Category]) -> Entity:
    size = values.get("occi.storage.size")
    if size is None:
        raise OcciError(400, "occi.storage.size (GiB) is required")
    if size <= 0 or size > 65536:
        raise OcciError(400, f"occi.storage.size: {size} is not between 0 and 65536 GiB")
    loc = _location(m, mixins) or m.call.core.locations.default()
    job = m.call.settle(m.ops.volumes.create_volume(VolumeCreate(
        name=_name(values, "occi-storage"), location=loc, size_gb=math.ceil(size))))
    return m.entity("storage", job.target or "")


def _network(m: Model, p: Parsed, values: dict[str, Any], mixins: list[Category]) -> Entity:
    loc = _location(m, mixins) or m.call.core.locations.default()
    cidr = values.get("occi.network.address") or _free_cidr(m, loc)
    if NET_MIXIN + "ipnetwork" not in p.mixins and "occi.network.address" in values:
        raise OcciError(400, "occi.network.address belongs to the ipnetwork mixin; add it")
    job = m.call.settle(m.ops.networks.create_network(NetworkCreate(
        name=_name(values, "occi-network"), location=loc, cidr=str(cidr))))
    return m.entity("network", job.target or "")


def _free_cidr(m: Model, loc: str) -> str:
    """A network without an address plan gets a /24 no other network at `loc` overlaps."""
    taken = [ipaddress.ip_network(n.cidr) for n in every(m.ops.networks.list_networks, location=loc)
             if n.cidr]
    for third in range(256):
        candidate = ipaddress.ip_network(f"10.{100 + third // 256}.{third}.0/24")
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise OcciError(409, f"no free /24 left in 10.100.0.0/16 at {loc}; give occi.network.address")


def _ends(m: Model, values: dict[str, Any], source: str, target: str) -> tuple[Entity, Entity]:
    for end in ("source", "target"):
        if f"occi.core.{end}" not in values:
            raise OcciError(400, f"occi.core.{end} (the entity this link connects) is required")
    return (m.by_url(str(values["occi.core.source"]), source),
            m.by_url(str(values["occi.core.target"]), target))


def _storagelink(m: Model, p: Parsed, values: dict[str, Any], mixins: list[Category]) -> Entity:
    compute, storage = _ends(m, values, "compute", "storage")
    device = str(values.get("occi.storagelink.deviceid") or DEFAULT_DEVICE)
    m.call.settle(m.ops.volumes.attach_volume(storage.resource, VolumeAttach(instance=compute.resource,
                                                                     device=device)))
    return m.entity("storagelink", storage.resource + LINK_SUFFIX)


def _networkinterface(m: Model, p: Parsed, values: dict[str, Any],
                      mixins: list[Category]) -> Entity:
    compute, network = _ends(m, values, "compute", "network")
    m.ops.instances.connect_network(compute.resource, network.resource)
    return m.entity("networkinterface", compute.resource + NIC_SUFFIX)


# ---- update -----------------------------------------------------------------------------------

def update(m: Model, e: Entity, p: Parsed, *, full: bool) -> Entity:
    """POST: change what is given. PUT: the representation is the whole entity: mutable
    attributes not given are reset, user mixins not given are removed. Provider mixins
    (templates, location) and immutable attributes cannot change; sent unchanged, they are
    fine."""
    if p.kinds and p.kinds != [e.kind.id]:
        raise OcciError(409, f"an entity's kind cannot change ({e.kind.id})")
    mixins = _mixins(m, p)
    fixed_now = {c.id for c in e.mixins if not c.user}
    fixed_asked = {c.id for c in mixins if not c.user}
    if fixed_asked - fixed_now or (full and fixed_now - fixed_asked and fixed_asked):
        raise OcciError(409, "templates and location of an existing entity cannot change")
    defs = _defs(e.kind, [*e.mixins, *mixins])
    values = attributes.check(p.attributes, defs, f"kind {e.kind.term!r} or its mixins")
    for name in [n for n in values if n.endswith((".state", ".state.message"))]:
        del values[name]  # onepane's to say, and it may have moved on since the client looked
    if bad := attributes.changed_immutables(values, e.attributes, defs):
        raise OcciError(409, f"{', '.join(bad)} cannot change (immutable)")
    unknown = [n for n, v in values.items() if defs[n].mutable and n not in MUTABLE_NOTES]
    if unknown:
        raise OcciError(409, f"onepane keeps no changes of {', '.join(unknown)}")
    notes = m.call.core.annotations.get(e.key)
    changes = {n: v for n, v in values.items() if defs[n].mutable}
    kept = {k: v for k, v in notes.attributes.items() if k.startswith("_")}  # onepane's own
    attrs = {**kept, **changes} if full else {**notes.attributes, **changes}
    user = [c.id for c in mixins if c.user]
    cats = user if full else [*notes.categories, *user]
    m.call.core.annotations.put(e.key, attrs, cats)
    m.refresh()
    return m.entity(e.kind.term, e.key)


# ---- actions ----------------------------------------------------------------------------------

def act(m: Model, e: Entity, term: str, p: Parsed) -> Entity:
    wanted = action_scheme(e.kind.term) + term
    if wanted not in ACTIONS:
        raise OcciError(400, f"{e.kind.term} has no action {term!r}")
    if p.actions and p.actions != [wanted]:
        raise OcciError(400, f"the action category {p.actions[0]!r} does not match ?action={term}")
    if e.kind.term != "compute":
        raise OcciError(409, f"onepane's providers cannot {term} a {e.kind.term}")
    state = e.attributes.get("occi.compute.state")
    if COMPUTE_ENDS.get(term) == state:
        return e  # already so: nothing to do
    if wanted not in {a.id for a in e.actions}:
        raise OcciError(409, f"{term} is not possible now: the compute is {state}")
    action = COMPUTE_ACTIONS[term]
    if term == "suspend" and m.call.core.locations.provider(
            m.ops.instances.get_instance(e.resource).location).capabilities.supports(Feature.suspend):
        action = "suspend"  # a real one: the VM pauses with its memory kept
    try:
        m.call.settle(m.ops.instances.instance_action(e.resource, action))
    except Conflict as exc:
        raise OcciError(409, exc.detail) from exc
    return m.entity("compute", e.key)


# ---- delete -----------------------------------------------------------------------------------

def delete(m: Model, e: Entity) -> None:
    ops, term = m.ops, e.kind.term
    try:
        if term == "compute":
            m.call.settle(ops.instances.destroy_instance(e.resource))
        elif term == "storage":
            m.call.settle(ops.volumes.delete_volume(e.resource))
        elif term == "storagelink":
            m.call.settle(ops.volumes.detach_volume(e.resource))
        elif term == "networkinterface":
            ops.instances.connect_network(e.resource, None)
        else:
            raise OcciError(409, f"onepane cannot delete a {term} yet")
    except NotFound as exc:
        raise OcciError(404, exc.detail) from exc
    m.call.core.annotations.forget(e.key)
    if e.alias:
        m.call.core.annotations.forget(ALIAS + e.alias)


# ---- user-defined mixins ----------------------------------------------------------------------

def define_mixins(m: Model, p: Parsed) -> None:
    if not p.categories:
        raise OcciError(400, "no category to define: send one mixin with term, scheme and "
                        "location")
    for c in p.categories:
        if c.cls != "mixin":
            raise OcciError(400, f"only mixins can be defined, not a {c.cls} ({c.id})")
        location = c.params.get("location", "")
        path = location.split("://", 1)[-1].split("/", 1)[-1] if "://" in location else location
        path = path.lstrip("/").removeprefix(m.call.root.lstrip("/"))
        if not LOCATION_PATH.match(path):
            raise OcciError(400, f"mixin {c.id}: location {location!r} must be a path ending "
                            "in '/', e.g. /occi/my_stuff/")
        if m.category(c.id) is not None or m.collection(path) is not None:
            raise OcciError(409, f"mixin {c.id} or location {location} exists")
        rel = c.params.get("rel")
        try:
            m.call.core.annotations.define(CategoryDef(
                c.id, c.term, c.scheme, c.params.get("title", ""), path,
                (rel,) if rel else ()))
        except OnepaneError as exc:
            raise OcciError(409, exc.detail) from exc


def delete_mixins(m: Model, p: Parsed) -> None:
    if not p.categories:
        raise OcciError(400, "name the mixin to delete with a Category")
    for c in p.categories:
        known = m.category(c.id)
        if known is None:
            raise OcciError(404, f"no mixin {c.id}")
        if not known.user:
            raise OcciError(403, f"{c.id} is onepane's own; only mixins a client defined can "
                            "be deleted")
        m.call.core.annotations.undefine(c.id)


def tag(m: Model, mixin: Category, urls: list[str], *, add: bool, replace: bool = False) -> None:
    """Add entities to a user mixin's collection (or remove them; PUT replaces them all)."""
    if not mixin.user:
        raise OcciError(403, f"{mixin.id} is onepane's own: its members follow from what "
                        "each entity is")
    targets = [m.by_url(u) for u in urls]
    if replace:
        for e in m.members(mixin):
            note = m.call.core.annotations.get(e.key)
            m.call.core.annotations.put(e.key, None, [c for c in note.categories if c != mixin.id])
    for e in targets:
        note = m.call.core.annotations.get(e.key)
        cats = [*note.categories, mixin.id] if add else \
            [c for c in note.categories if c != mixin.id]
        m.call.core.annotations.put(e.key, None, cats)
