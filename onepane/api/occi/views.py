"""onepane's inventory as OCCI sees it, for one request: every category (standard, templates,
client-defined), every entity, which collection a path names, and filtering."""

from __future__ import annotations

from functools import cached_property

from ...errors import NotFound
from ...inventory.paging import every
from ...model import Instance, Volume
from . import entities
from .categories import ACTIONS, KINDS, LINK_KINDS, MIXINS, ONEPANE, RESOURCE_KINDS, Category
from .entities import ALIAS, LINK_SUFFIX, NIC_SUFFIX, Context, Entity, OcciError
from .protocol import Call


def user_mixin(d_id: str, term: str, scheme: str, title: str, location: str,
               depends: tuple[str, ...]) -> Category:
    return Category(term, scheme, "mixin", title, parent=depends[0] if depends else None,
                    location=location, user=True)


class Model:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.ops = call.core.ops
        self.tpl = call.cache.get(call.core)
        self.user = {d.id: user_mixin(d.id, d.term, d.scheme, d.title, d.location, d.depends)
                     for d in call.core.annotations.categories()}

    def refresh(self) -> None:
        """After a change of annotations: build entities from what is stored now."""
        self.__dict__.pop("ctx", None)

    @cached_property
    def ctx(self) -> Context:
        return Context(self.tpl, self.call.core.annotations.all(), self.user)

    # ---- categories -----------------------------------------------------------------------

    def categories(self) -> list[Category]:
        return [*KINDS.values(), *MIXINS.values(), *ACTIONS.values(), *self.tpl.all(),
                *self.user.values()]

    def category(self, cid: str) -> Category | None:
        return next((c for c in self.categories() if c.id == cid), None)

    def collection(self, path: str) -> Category | None:
        """The kind or mixin whose location `path` (relative to the OCCI root) is."""
        path = path if path.endswith("/") else path + "/"
        return next((c for c in self.categories() if c.location == path), None)

    # ---- entities -------------------------------------------------------------------------

    def of_kind(self, term: str) -> list[Entity]:
        if term == "entity":
            return [e for t in (*RESOURCE_KINDS, *LINK_KINDS) for e in self.of_kind(t)]
        if term == "resource":
            return [e for t in RESOURCE_KINDS for e in self.of_kind(t)]
        if term == "link":
            return [e for t in LINK_KINDS for e in self.of_kind(t)]
        ctx = self.ctx
        if term == "storage":
            return [entities.storage(v, ctx) for v in every(self.ops.volumes.list_volumes)]
        if term == "network":
            return [entities.network(n, ctx) for n in every(self.ops.networks.list_networks)]
        if term == "storagelink":
            return [entities.storagelink(v, ctx) for v in every(self.ops.volumes.list_volumes)
                    if v.attached_to]
        instances = list(every(self.ops.instances.list_instances))
        if term == "networkinterface":
            return [entities.networkinterface(i, ctx) for i in instances if i.network]
        vols = [v for v in every(self.ops.volumes.list_volumes) if v.attached_to]
        return [entities.compute(i, ctx, vols) for i in instances]

    def members(self, c: Category) -> list[Entity]:
        if c.cls == "kind":
            return self.of_kind(c.term)
        kinds = [k.term for k in KINDS.values() if k.id in c.applies] or ["entity"]
        everything = [e for k in kinds for e in self.of_kind(k)] if kinds != ["entity"] \
            else self.of_kind("entity")
        return [e for e in everything
                if any(m.id == c.id or m.parent == c.id for m in e.mixins)]

    def entity(self, kind: str, eid: str) -> Entity:
        alias = self.call.core.annotations.get(f"{ALIAS}{kind}/{eid}").attributes.get("key")
        eid = str(alias) if alias else eid
        try:
            if kind == "compute":
                inst = self.ops.instances.get_instance(eid)
                return entities.compute(inst, self.ctx, self._volumes_of(inst))
            if kind == "storage":
                return entities.storage(self.ops.volumes.get_volume(eid), self.ctx)
            if kind == "network":
                return entities.network(self.ops.networks.get_network(eid), self.ctx)
            if kind == "storagelink" and eid.endswith(LINK_SUFFIX):
                vol = self.ops.volumes.get_volume(eid.removesuffix(LINK_SUFFIX))
                if vol.attached_to:
                    return entities.storagelink(vol, self.ctx)
            if kind == "networkinterface" and eid.endswith(NIC_SUFFIX):
                inst = self.ops.instances.get_instance(eid.removesuffix(NIC_SUFFIX))
                if inst.network:
                    return entities.networkinterface(inst, self.ctx)
        except NotFound:
            pass
        raise OcciError(404, f"no {kind} {eid!r}")

    def by_url(self, url: str, expect: str | None = None) -> Entity:
        """An entity named by a URL or a path (absolute, or relative to the OCCI root)."""
        path = url.split("?", 1)[0]
        if "://" in path:
            path = "/" + path.split("://", 1)[1].split("/", 1)[-1]
        path = path.removeprefix(self.call.root).lstrip("/")
        kind, _, eid = path.rstrip("/").rpartition("/")
        if kind not in KINDS or not eid or (expect and kind != expect):
            raise OcciError(400, f"{url!r} is not the location of a{'' if expect else 'n'} "
                            f"{expect or 'entity'}")
        return self.entity(kind, eid)

    def _volumes_of(self, inst: Instance) -> list[Volume]:
        return [v for v in every(self.ops.volumes.list_volumes, location=inst.location)
                if v.attached_to == inst.id]


def matches(e: Entity, categories: list[str], attributes: dict[str, object]) -> bool:
    """GFD.223 filtering: every category named, every attribute with that value."""
    ids = {c.id for c in [e.kind, *e.mixins]} | {c.parent for c in e.mixins if c.parent}
    kinds = {e.kind.id, *(k.id for k in KINDS.values() if k.id == e.kind.parent)}
    for cid in categories:
        if cid not in ids and cid not in kinds and not _is_ancestor(cid, e.kind):
            return False
    return all(str(e.attributes.get(name)) == str(value) for name, value in attributes.items())


def _is_ancestor(cid: str, kind: Category) -> bool:
    parent = kind.parent
    while parent:
        if parent == cid:
            return True
        parent = next((k.parent for k in KINDS.values() if k.id == parent), None)
    return False


__all__ = ["ONEPANE", "Model", "matches"]
