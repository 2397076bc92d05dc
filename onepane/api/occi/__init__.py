"""OGF OCCI 1.2 front end (Core, Infrastructure, HTTP protocol) at /occi/.

Query interface at /occi/-/ (and /.well-known/org/ogf/occi/-/); collections compute/, storage/,
network/, networkinterface/, storagelink/. Renderings text/plain, text/occi and
application/occi+json by content negotiation (text/uri-list too, for collections). Same bearer
tokens and roles as the native API; like the EC2 front end it only translates.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from ...core import Core
from ...errors import Conflict, NotFound, OnepaneError
from ...inventory.operations import every
from ...model import InstanceCreate, NetworkCreate, VolumeAttach, VolumeCreate, slug
from ..deps import core, header_lists, operator, viewer
from . import entities, render
from .categories import (
    ACTIONS,
    KIND_BY_ID,
    KINDS,
    MIXINS,
    NET_MIXIN,
    Category,
    action_scheme,
)
from .entities import Entity, OcciError
from .parse import Parsed, parse
from .templates import TemplateCache

router = APIRouter(include_in_schema=False)
SERVER = "onepane OCCI/1.2"
COLLECTIONS = ("compute", "storage", "network", "networkinterface", "storagelink")
ACCEPTABLE = (render.TEXT_PLAIN, render.TEXT_OCCI, render.JSON, "application/json", render.URI_LIST)
DEFAULT_DEVICE = "/dev/vdb"
COMPUTE_ACTIONS = {"start": "start", "stop": "stop", "restart": "reboot", "suspend": "stop"}


# ---- routes -----------------------------------------------------------------------------------

@router.get("/occi/-/", dependencies=[viewer])
@router.get("/.well-known/org/ogf/occi/-/", dependencies=[viewer])
async def query_interface(request: Request) -> Response:
    return await _answer(request, _query_interface)


@router.get("/occi/{collection}/", dependencies=[viewer])
async def list_collection(request: Request, collection: str) -> Response:
    return await _answer(request, _list, collection)


@router.post("/occi/{collection}/", dependencies=[operator])
async def create(request: Request, collection: str) -> Response:
    return await _answer(request, _create, collection)


@router.get("/occi/{collection}/{eid}", dependencies=[viewer])
async def get_entity(request: Request, collection: str, eid: str) -> Response:
    return await _answer(request, _get, collection, eid)


@router.post("/occi/{collection}/{eid}", dependencies=[operator])
async def act(request: Request, collection: str, eid: str) -> Response:
    return await _answer(request, _action, collection, eid)


@router.delete("/occi/{collection}/{eid}", dependencies=[operator])
async def delete(request: Request, collection: str, eid: str) -> Response:
    return await _answer(request, _delete, collection, eid)


@router.api_route("/occi/{collection}/{eid}", methods=["PUT"], dependencies=[operator])
async def put(request: Request, collection: str, eid: str) -> Response:
    return _text(405, "PUT is not supported: create with POST to the collection (onepane picks the "
                 "id), change state with actions", {"Allow": "GET, POST, DELETE"})


# ---- plumbing ---------------------------------------------------------------------------------

class Call:
    """One request: what came in (parsed lazily) and how to answer it."""

    def __init__(self, request: Request, body: bytes) -> None:
        self.request = request
        self.core: Core = core(request)
        self.body = body
        self.base = str(request.base_url).rstrip("/") + "/occi/"
        self.accept = negotiate(request.headers.get("accept", ""))
        self.cache: TemplateCache = request.app.state.occi_templates  # made by create_app

    def parsed(self) -> Parsed:
        ctype = self.request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not ctype and not self.body.strip():
            ctype = "text/occi"  # everything, if anything, is in the headers
        return parse(ctype, self.body, header_lists(self.request))


async def _answer(request: Request, fn: Any, *args: Any) -> Response:
    try:
        call = Call(request, await request.body())
        return await run_in_threadpool(fn, call, *args)
    except OcciError as exc:
        return _text(exc.status, exc.message)
    except OnepaneError as exc:
        status = {404: 404, 409: 409, 401: 401, 403: 403}.get(exc.status, 400 if exc.status < 500
                                                               else exc.status)
        where = f"{exc.field}: " if exc.field else ""
        return _text(status, where + exc.detail)
    except ValidationError as exc:
        first = exc.errors()[0]
        return _text(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}")


def negotiate(accept: str) -> str:
    """The best of our media types for an Accept header; text/plain when anything goes."""
    if not accept.strip():
        return render.TEXT_PLAIN
    choices = []
    for n, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        choices.append((-q, n, media.lower()))
    for _, _, media in sorted(choices):
        if media in ("*/*", "text/*"):
            return render.TEXT_PLAIN
        if media == "application/*":
            return render.JSON
        if media in ACCEPTABLE:
            return render.JSON if media == "application/json" else media
    raise OcciError(406, f"none of {accept!r} can be rendered; onepane renders "
                    f"{', '.join(ACCEPTABLE)}")


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message.rstrip() + "\n", status_code=status, media_type="text/plain",
                    headers={"Server": SERVER, **(headers or {})})


def _lines(call: Call, status: int, lines: render.Lines, json_doc: dict[str, Any] | None,
           headers: dict[str, str] | None = None) -> Response:
    headers = {"Server": SERVER, **(headers or {})}
    if call.accept == render.JSON and json_doc is not None:
        return Response(render.dumps(json_doc), status, headers, media_type=render.JSON)
    if call.accept == render.URI_LIST:
        urls = [v for k, v in lines if k == "X-OCCI-Location"]
        if len(urls) != len(lines):
            raise OcciError(406, "text/uri-list renders collections only")
        return Response("".join(u + "\n" for u in urls), status, headers, media_type=render.URI_LIST)
    if call.accept == render.TEXT_OCCI:
        resp = Response("OK\n" if not lines else "", status, headers, media_type=render.TEXT_OCCI)
        for k, v in lines:
            resp.raw_headers.append((k.lower().encode(), v.encode()))
        return resp
    body = "".join(f"{k}: {v}\n" for k, v in lines) or "OK\n"
    return Response(body, status, headers, media_type=render.TEXT_PLAIN)


# ---- query interface --------------------------------------------------------------------------

def _query_interface(call: Call) -> Response:
    tpl = call.cache.get(call.core)
    cats: list[Category] = [*KINDS.values(), *MIXINS.values(), *ACTIONS.values(), *tpl.all()]
    wanted = call.request.query_params.get("category")
    if wanted:
        cats = [c for c in cats if wanted in (c.id, c.term)]
        if not cats:
            raise OcciError(404, f"no category {wanted!r}")
    return _lines(call, 200, render.categories_text(cats, call.base),
                  render.categories_json(cats, call.base))


# ---- collections ------------------------------------------------------------------------------

def _collection(name: str) -> None:
    if name not in COLLECTIONS:
        raise OcciError(404, f"no collection {name!r}; onepane serves {', '.join(COLLECTIONS)}")


def _all(call: Call, collection: str) -> list[Entity]:
    ops, tpl = call.core.ops, call.cache.get(call.core)
    if collection == "storage":
        return [entities.storage(v, tpl) for v in every(ops.list_volumes)]
    if collection == "network":
        return [entities.network(n, tpl) for n in every(ops.list_networks)]
    if collection == "storagelink":
        return [entities.storagelink(v) for v in every(ops.list_volumes) if v.attached_to]
    instances = list(every(ops.list_instances))
    if collection == "networkinterface":
        return [entities.networkinterface(i) for i in instances if i.network]
    vols = [v for v in every(ops.list_volumes) if v.attached_to]
    return [entities.compute(i, tpl, vols) for i in instances]


def _list(call: Call, collection: str) -> Response:
    _collection(collection)
    found = [e for e in _all(call, collection) if _matches(call, e)]
    lines = render.locations_text(found, call.base)
    doc = render.collection_json(found, call.base, links=collection in ("storagelink", "networkinterface"))
    return _lines(call, 200, lines, doc)


def _matches(call: Call, e: Entity) -> bool:
    q = call.request.query_params
    for cat in q.getlist("category"):
        if not any(cat in (c.id, c.term) for c in [e.kind, *e.mixins]):
            return False
    for attr in q.getlist("attribute"):
        name, sep, value = attr.partition("=")
        if sep and str(e.attributes.get(name)) != value:
            return False
        if not sep and not any(attr in str(v) for v in e.attributes.values()):
            return False
    return True


def _one(call: Call, collection: str, eid: str) -> Entity:
    _collection(collection)
    ops, tpl = call.core.ops, call.cache.get(call.core)
    try:
        if collection == "compute":
            inst = ops.get_instance(eid)
            vols = [v for v in every(ops.list_volumes, location=inst.location) if v.attached_to == eid]
            return entities.compute(inst, tpl, vols)
        if collection == "storage":
            return entities.storage(ops.get_volume(eid), tpl)
        if collection == "network":
            return entities.network(ops.get_network(eid), tpl)
        if collection == "storagelink":
            vol = ops.get_volume(eid)
            if vol.attached_to:
                return entities.storagelink(vol)
        if collection == "networkinterface":
            inst = ops.get_instance(eid)
            if inst.network:
                return entities.networkinterface(inst)
    except NotFound:
        pass
    raise OcciError(404, f"no {collection} {eid!r}")


def _get(call: Call, collection: str, eid: str) -> Response:
    e = _one(call, collection, eid)
    return _lines(call, 200, render.entity_text(e, call.base), render.entity_json(e, call.base))


# ---- create -----------------------------------------------------------------------------------

def _create(call: Call, collection: str) -> Response:
    _collection(collection)
    p = call.parsed()
    if p.actions:
        raise OcciError(400, "an action category in a creation request; invoke actions with "
                        "POST <entity>?action=<term>")
    kind = _kind(p, collection)
    _check_attributes(p, kind, call)
    eid = {"compute": _create_compute, "storage": _create_storage, "network": _create_network,
           "storagelink": _create_storagelink, "networkinterface": _create_networkinterface
           }[collection](call, p)
    if collection == "storagelink":  # the attach job runs on: render the link as it will be
        e = entities.storagelink(call.core.ops.get_volume(eid).model_copy(update={
            "attached_to": _ref(p, "source", "compute"),
            "device": str(p.attributes.get("occi.storagelink.deviceid") or DEFAULT_DEVICE)}),
            state="inactive")
    else:
        e = _one(call, collection, eid)
    return _lines(call, 201, render.entity_text(e, call.base), render.entity_json(e, call.base),
                  {"Location": call.base + e.location})


def _kind(p: Parsed, collection: str) -> Category:
    if len(p.kinds) != 1:
        raise OcciError(400, f"a creation request needs exactly one kind category, got {len(p.kinds)}")
    kind = KIND_BY_ID.get(p.kinds[0])
    if kind is None:
        raise OcciError(400, f"unknown kind {p.kinds[0]!r}; GET /occi/-/ lists the kinds")
    if kind.term != collection:
        raise OcciError(400, f"kind {kind.term!r} cannot be created in the {collection}/ collection")
    return kind


def _check_attributes(p: Parsed, kind: Category, call: Call) -> None:
    tpl = call.cache.get(call.core)
    known = {a.name for c in (kind, KINDS["entity"], KINDS["resource"], KINDS["link"],
                              *MIXINS.values()) for a in c.attributes}
    for m in p.mixins:
        if m not in MIXINS and m not in {c.id for c in tpl.all()}:
            raise OcciError(400, f"unknown mixin {m!r}; GET /occi/-/ lists the mixins")
    for name in p.attributes:
        if name not in known:
            raise OcciError(400, f"attribute {name!r} is not defined for kind {kind.term!r} or its mixins")


def _location(call: Call, p: Parsed) -> str | None:
    tpl = call.cache.get(call.core)
    locs = [tpl.native[m][0] for m in p.mixins if m in tpl.locations]
    return locs[0] if locs else None


def _name(p: Parsed, fallback: str) -> str:
    raw = (p.attributes.get("occi.core.title") or p.attributes.get("occi.compute.hostname")
           or p.attributes.get("occi.network.label"))
    return slug(str(raw) if raw else None) or fallback


def _create_compute(call: Call, p: Parsed) -> str:
    tpl = call.cache.get(call.core)
    os_tpls = [tpl.native[m] for m in p.mixins if m in tpl.os]
    res_tpls = [tpl.native[m] for m in p.mixins if m in tpl.resource]
    if len(os_tpls) != 1:
        raise OcciError(400, "a compute needs exactly one os_tpl mixin (an image); GET "
                        "/occi/-/?category=os_tpl lists them")
    if len(res_tpls) > 1:
        raise OcciError(400, "a compute takes at most one resource_tpl mixin")
    loc = _location(call, p) or os_tpls[0][0]
    for where, what in [*os_tpls, *res_tpls]:
        if where != loc:
            raise OcciError(400, f"template {what!r} belongs to location {where!r}, not {loc!r}")
    size = res_tpls[0][1] if res_tpls else tpl.default_size.get(loc)
    if size is None:
        raise OcciError(400, f"location {loc} lists no sizes; give a resource_tpl mixin")
    network = None
    for link in p.links:
        target = link.target.rstrip("/").split("/")
        if len(target) < 2 or target[-2] != "network":
            raise OcciError(400, f"a compute can link to a network only, not {link.target!r}")
        network = target[-1]
    job = call.core.ops.create_instance(InstanceCreate(
        name=_name(p, "occi-compute"), location=loc, image=os_tpls[0][1], size=size, network=network))
    return job.target or ""


def _create_storage(call: Call, p: Parsed) -> str:
    size = p.attributes.get("occi.storage.size")
    if not isinstance(size, int | float) or isinstance(size, bool) or size <= 0:
        raise OcciError(400, "occi.storage.size (GiB, a positive number) is required")
    loc = _location(call, p) or call.core.locations.default()
    job = call.core.ops.create_volume(VolumeCreate(name=_name(p, "occi-storage"), location=loc,
                                                   size_gb=math.ceil(size)))
    return job.target or ""


def _create_network(call: Call, p: Parsed) -> str:
    cidr = p.attributes.get("occi.network.address")
    if NET_MIXIN + "ipnetwork" not in p.mixins or not isinstance(cidr, str):
        raise OcciError(400, "a network needs the ipnetwork mixin with occi.network.address "
                        "(a CIDR such as 10.1.0.0/24)")
    loc = _location(call, p) or call.core.locations.default()
    job = call.core.ops.create_network(NetworkCreate(name=_name(p, "occi-network"), location=loc,
                                                     cidr=cidr))
    return job.target or ""


def _create_storagelink(call: Call, p: Parsed) -> str:
    source = _ref(p, "source", "compute")
    target = _ref(p, "target", "storage")
    device = str(p.attributes.get("occi.storagelink.deviceid") or DEFAULT_DEVICE)
    call.core.ops.attach_volume(target, VolumeAttach(instance=source, device=device))
    return target


def _create_networkinterface(call: Call, p: Parsed) -> str:
    raise OcciError(400, "onepane attaches a network when a compute is created: give a Link to "
                    "the network in the compute's creation request")


def _ref(p: Parsed, end: str, collection: str) -> str:
    value = p.attributes.get(f"occi.core.{end}")
    if not isinstance(value, str):
        raise OcciError(400, f"occi.core.{end} (the {collection} this link connects) is required")
    parts = value.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != collection:
        raise OcciError(400, f"occi.core.{end} must be a {collection} location, not {value!r}")
    return parts[-1]


# ---- actions and delete -----------------------------------------------------------------------

def _action(call: Call, collection: str, eid: str) -> Response:
    term = call.request.query_params.get("action")
    if not term:
        raise OcciError(400, "POST to an entity invokes an action (?action=<term>); onepane does not "
                        "update attributes in place")
    _collection(collection)
    p = call.parsed()
    wanted = action_scheme(collection) + term
    if wanted not in ACTIONS:
        raise OcciError(400, f"{collection} has no action {term!r}")
    if p.actions and p.actions != [wanted]:
        raise OcciError(400, f"the action category {p.actions[0]!r} does not match ?action={term}")
    e = _one(call, collection, eid)
    if collection != "compute":
        raise OcciError(400, f"onepane's providers cannot {term} a {collection}")
    if wanted not in {a.id for a in e.actions}:
        raise OcciError(400, f"{term} is not applicable now: the compute is "
                        f"{e.attributes.get('occi.compute.state')}")
    try:
        call.core.ops.instance_action(eid, COMPUTE_ACTIONS[term])
    except Conflict as exc:
        raise OcciError(409, exc.detail) from exc
    return _lines(call, 200, [], None)


def _delete(call: Call, collection: str, eid: str) -> Response:
    _one(call, collection, eid)
    ops = call.core.ops
    if collection == "compute":
        ops.destroy_instance(eid)
    elif collection == "storage":
        ops.delete_volume(eid)
    elif collection == "storagelink":
        ops.detach_volume(eid)
    else:
        raise OcciError(400, f"onepane cannot delete a {collection}")
    return _lines(call, 200, [], None)


__all__ = ["TemplateCache", "router"]
