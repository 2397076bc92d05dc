"""OGF OCCI 1.2 front end (Core, Infrastructure, HTTP protocol) at /occi/.

The query interface is at /occi/-/ (also /-/ and /.well-known/org/ogf/occi/-/); every kind
and mixin has a collection at its location (compute/, storage/, network/, networkinterface/,
storagelink/, entity/, resource/, link/, mixin/...). Renderings text/plain, text/occi+plain,
text/occi and application/occi+json by content negotiation (text/uri-list for collections).
Same bearer tokens and roles as the native API; like the EC2 front end it only translates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from ...errors import OnepaneError
from ..deps import header_lists, operator, viewer
from . import changes, render
from .categories import KINDS, Category
from .entities import Entity, OcciError
from .parse import parse
from .protocol import MAX_BODY, Call, check_version, reply, text
from .templates import TemplateCache
from .views import Model, matches

router = APIRouter(include_in_schema=False)
QUERY_PATHS = ("/occi/-/", "/-/", "/.well-known/org/ogf/occi/-/")
READ, WRITE = ["GET", "HEAD"], ["POST", "PUT", "DELETE"]
PAGE_MAX = 1000


# ---- routes -----------------------------------------------------------------------------------

async def query_read(request: Request) -> Response:
    return await _answer(request, _query_get)


async def query_write(request: Request) -> Response:
    return await _answer(request, _query_change)


for _path in QUERY_PATHS:
    router.add_api_route(_path, query_read, methods=READ, dependencies=[viewer])
    router.add_api_route(_path, query_write, methods=WRITE, dependencies=[operator])


@router.api_route("/occi/{path:path}", methods=READ, dependencies=[viewer])
async def read(request: Request, path: str) -> Response:
    return await _answer(request, _read, path)


@router.api_route("/occi/{path:path}", methods=WRITE, dependencies=[operator])
async def write(request: Request, path: str) -> Response:
    return await _answer(request, _write, path)


async def _answer(request: Request, fn: Callable[..., Response], *args: Any) -> Response:
    try:
        check_version(request)
        body = await _body(request)
        call = Call(request, body)
        return await run_in_threadpool(fn, call, *args)
    except OcciError as exc:
        return text(exc.status, exc.message)
    except OnepaneError as exc:
        status = exc.status if exc.status in (401, 403, 404, 409, 503) else \
            (400 if exc.status < 500 else 502)
        where = f"{exc.field}: " if exc.field and not exc.detail.startswith(exc.field) else ""
        return text(status, where + exc.detail)
    except ValidationError as exc:
        first = exc.errors()[0]
        return text(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}")


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise OcciError(413, f"the body is over {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise OcciError(413, f"the body is over {MAX_BODY} bytes")
    return body


# ---- query interface --------------------------------------------------------------------------

def _query_get(call: Call) -> Response:
    m = Model(call)
    cats = m.categories()
    wanted = [*call.request.query_params.getlist("category"), *_filter_categories(call)]
    if wanted:
        cats = [c for c in cats if any(w in (c.id, c.term) for w in wanted)]
        if not cats:
            raise OcciError(404, f"no category {', '.join(wanted)}")
    return reply(call, 200, render.categories_text(cats, call.root),
                 render.categories_json(cats, call.root))


def _query_change(call: Call) -> Response:
    if call.request.method == "PUT":
        raise OcciError(405, "the query interface takes GET, POST (define a mixin) and DELETE")
    m = Model(call)
    p = _categories_request(call)
    if call.request.method == "POST":
        changes.define_mixins(m, p)
    else:
        changes.delete_mixins(m, p)
    return reply(call, 200, [], None)


def _categories_request(call: Call) -> Any:
    """Mixin definitions in any rendering (JSON: {"mixins": [{term, scheme, location}]})."""
    if call.content_type in (render.JSON, "application/json"):
        import json

        from .parse import CategoryRequest, Parsed
        try:
            doc = json.loads(call.body or b"{}")
            items = doc.get("mixins", [])
            return Parsed(categories=[CategoryRequest(
                str(i["scheme"]) + str(i["term"]), str(i["term"]), str(i["scheme"]), "mixin",
                {k: str(i[k]) for k in ("title", "location") if k in i}
                | ({"rel": str(i["depends"][0])} if i.get("depends") else {}))
                for i in items])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise OcciError(400, "a mixin definition in JSON is {\"mixins\": [{\"term\": …, "
                            "\"scheme\": …, \"location\": …}]}") from exc
    return call.parsed()


def _filter_categories(call: Call) -> list[str]:
    """Category filters sent as text/occi headers (the way GFD.223 recommends)."""
    headers = header_lists(call.request)
    if "category" not in headers:
        return []
    return [c.id for c in parse("text/occi", b"", {"category": headers["category"]}).categories]


def _filter_attributes(call: Call) -> dict[str, object]:
    out: dict[str, object] = {}
    for attr in call.request.query_params.getlist("attribute"):
        name, _, value = attr.partition("=")
        out[name] = value.strip('"')
    headers = header_lists(call.request)
    if "x-occi-attribute" in headers:
        out.update(parse("text/occi", b"", {"x-occi-attribute": headers["x-occi-attribute"]})
                   .attributes)
    return out


# ---- reading ----------------------------------------------------------------------------------

def _read(call: Call, path: str) -> Response:
    m = Model(call)
    collection = m.collection(path)
    if collection is not None:
        return _list(call, m, collection)
    e = _entity(m, path)
    return _entity_reply(call, 200, e)


def _list(call: Call, m: Model, collection: Category) -> Response:
    wanted = [*call.request.query_params.getlist("category"), *_filter_categories(call)]
    found = [e for e in m.members(collection) if matches(e, wanted, _filter_attributes(call))]
    found, headers = _page(call, found)
    lines = render.locations_text(found, call.base)
    return reply(call, 200, lines, render.collection_json(found, call.base), headers)


def _page(call: Call, found: list[Entity]) -> tuple[list[Entity], dict[str, str]]:
    """`?limit=N&offset=M`; the reply says where the next page is (Link rel="next")."""
    q = call.request.query_params
    try:
        limit = int(q.get("limit", PAGE_MAX))
        offset = int(q.get("offset", 0))
    except ValueError as exc:
        raise OcciError(400, "limit and offset are whole numbers") from exc
    if not 1 <= limit <= PAGE_MAX or offset < 0:
        raise OcciError(400, f"limit is 1..{PAGE_MAX} and offset at least 0")
    page = found[offset:offset + limit]
    headers = {"X-OCCI-Total": str(len(found))}
    if offset + limit < len(found):
        url = call.request.url.include_query_params(limit=limit, offset=offset + limit)
        headers["Link"] = f'<{url}>; rel="next"'
    return page, headers


def _entity(m: Model, path: str) -> Entity:
    kind, _, eid = path.rstrip("/").rpartition("/")
    if kind not in KINDS or not eid:
        raise OcciError(404, f"nothing at /occi/{path}; GET /occi/-/ lists the collections")
    return m.entity(kind, eid)


def _entity_reply(call: Call, status: int, e: Entity, headers: dict[str, str] | None = None
                  ) -> Response:
    return reply(call, status, render.entity_text(e, call.base, call.root),
                 render.entity_json(e, call.base), headers)


# ---- writing ----------------------------------------------------------------------------------

def _write(call: Call, path: str) -> Response:
    m = Model(call)
    method = call.request.method
    collection = m.collection(path)
    if collection is not None:
        return _write_collection(call, m, collection, method)
    try:
        e = _entity(m, path)
    except OcciError as exc:
        kind, _, client_id = path.rstrip("/").rpartition("/")
        if exc.status != 404 or method != "PUT" or kind not in KINDS:
            raise
        e = changes.create_at(m, KINDS[kind], client_id, call.parsed())
        return _entity_reply(call, 201, e, {"Location": call.base + e.location})
    if method == "DELETE":
        changes.delete(m, e)
        return reply(call, 200, [], None)
    p = call.parsed()
    if method == "POST" and (term := call.request.query_params.get("action")):
        return _entity_reply(call, 200, changes.act(m, e, term, p))
    if method == "POST" and p.actions:
        raise OcciError(400, "an action is invoked with ?action=<term> in the URL")
    return _entity_reply(call, 200, changes.update(m, e, p, full=method == "PUT"))


def _write_collection(call: Call, m: Model, collection: Category, method: str) -> Response:
    p = call.parsed()
    if method == "POST" and collection.cls == "kind" and not _locations(call):
        e = changes.create(m, collection, p)
        return _entity_reply(call, 201, e, {"Location": call.base + e.location})
    if collection.cls == "kind":
        if method == "POST":
            raise OcciError(400, "POST to a kind's collection creates one entity")
        if method == "PUT":
            raise OcciError(405, "PUT is not defined on a kind's collection")
        urls = _locations(call)
        if not urls:
            raise OcciError(400, "name the entities to delete (X-OCCI-Location); onepane does "
                            "not delete a whole collection at once")
        for u in urls:
            changes.delete(m, m.by_url(u, collection.term if collection.term not in (
                "entity", "resource", "link") else None))
        return reply(call, 200, [], None)
    changes.tag(m, collection, _locations(call), add=method != "DELETE", replace=method == "PUT")
    return reply(call, 200, [], None)


def _locations(call: Call) -> list[str]:
    """Entity locations in a request: X-OCCI-Location lines or headers, a text/uri-list, or
    JSON {"locations": [...]}."""
    ctype = call.content_type
    if ctype == render.URI_LIST:
        return [line.strip() for line in call.body.decode("utf-8", "replace").splitlines()
                if line.strip() and not line.startswith("#")]
    if ctype in (render.JSON, "application/json"):
        import json
        try:
            doc = json.loads(call.body or b"{}")
        except (ValueError, RecursionError) as exc:
            raise OcciError(400, f"malformed JSON: {exc}") from exc
        locs = doc.get("locations", []) if isinstance(doc, dict) else []
        if not isinstance(locs, list) or not all(isinstance(x, str) for x in locs):
            raise OcciError(400, "$.locations must be a list of URLs")
        return list(locs)
    if ctype in (render.TEXT_PLAIN, render.TEXT_OCCI_PLAIN, ""):
        return [line.split(":", 1)[1].strip() for line in
                call.body.decode("utf-8", "replace").splitlines()
                if line.lower().startswith("x-occi-location:")]
    values = header_lists(call.request).get("x-occi-location", [])
    return [u.strip() for v in values for u in v.split(",") if u.strip()]


__all__ = ["TemplateCache", "router"]
