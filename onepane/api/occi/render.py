"""OCCI 1.2 renderings: text/plain and text/occi+plain (GFD.229, in the body), text/occi (the
same lines as headers), application/occi+json (GFD.226), and text/uri-list for collections.

Category `location`s are absolute paths (`/occi/compute/`): a URI reference that resolves the
same against any URL of this server, and what clients that join the endpoint and the location
expect. Entity references are absolute URLs. JSON documents leave out empty arrays (the
schema's arrays have at least one item) and give every kind and mixin its location.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .categories import Attribute, Category
from .entities import Entity

TEXT_PLAIN, TEXT_OCCI, JSON, URI_LIST = "text/plain", "text/occi", "application/occi+json", "text/uri-list"
TEXT_OCCI_PLAIN = "text/occi+plain"
Lines = list[tuple[str, str]]


# ---- text -------------------------------------------------------------------------------------

def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return quote(str(value))


def attribute_def(a: Attribute) -> str:
    """GFD.229: one property group, `name{required immutable}`."""
    props = [p for p, on in (("required", a.required), ("immutable", not a.mutable)) if on]
    return a.name + ("{" + " ".join(props) + "}" if props else "")


def category_line(c: Category, root: str, *, full: bool) -> str:
    parts = [c.term, f"scheme={quote(c.scheme)}", f"class={quote(c.cls)}"]
    if c.title:
        parts.append(f"title={quote(c.title)}")
    if full:
        rel = c.parent or (c.applies[0] if c.applies else None)
        if rel:
            parts.append(f"rel={quote(rel)}")
        if c.location:
            parts.append(f"location={quote(root + c.location)}")
        if c.attributes:
            parts.append("attributes=" + quote(" ".join(attribute_def(a) for a in c.attributes)))
        if c.actions:
            parts.append(f"actions={quote(' '.join(c.actions))}")
    return "; ".join(parts)


def categories_text(cats: list[Category], root: str) -> Lines:
    return [("Category", category_line(c, root, full=True)) for c in cats]


def entity_text(e: Entity, base: str, root: str) -> Lines:
    lines: Lines = [("Category", category_line(c, root, full=False)) for c in [e.kind, *e.mixins]]
    for link in e.links:
        assert link.target is not None
        extra = "".join(f"; {k}={attr_value(v)}" for k, v in link.attributes.items()
                        if k not in ("occi.core.source", "occi.core.target"))
        lines.append(("Link", f"<{base}{link.target[0]}>; rel={quote(link.target[1])}; "
                              f"self={quote(base + link.location)}; category={quote(link.kind.id)}{extra}"))
    for act in e.actions:
        lines.append(("Link", f"<{base}{e.location}?action={act.term}>; rel={quote(act.id)}"))
    for k, v in e.attributes.items():
        if k in ("occi.core.source", "occi.core.target"):
            v = base + str(v)
        lines.append(("X-OCCI-Attribute", f"{k}={attr_value(v)}"))
    return lines


def locations_text(entities: list[Entity], base: str) -> Lines:
    return [("X-OCCI-Location", base + e.location) for e in entities]


# ---- JSON -------------------------------------------------------------------------------------

def _attr_defs(c: Category) -> dict[str, Any]:
    out = {}
    for a in c.attributes:
        d: dict[str, Any] = {"mutable": a.mutable, "required": a.required, "type": a.json_type}
        if a.description:
            d["description"] = a.description
        if a.values:
            d["pattern"] = "^(" + "|".join(a.values) + ")$"
        out[a.name] = d
    return out


def _category_json(c: Category, root: str) -> dict[str, Any]:
    item: dict[str, Any] = {"term": c.term, "scheme": c.scheme}
    if c.title:
        item["title"] = c.title
    if c.attributes:
        item["attributes"] = _attr_defs(c)
    if c.cls == "action":
        return item
    if c.actions:
        item["actions"] = list(c.actions)
    if c.cls == "kind" and c.parent:
        item["parent"] = c.parent
    if c.cls == "mixin":
        if c.parent:
            item["depends"] = [c.parent]
        if c.applies:
            item["applies"] = list(c.applies)
    if c.location:
        item["location"] = root + c.location
    return item


def categories_json(cats: list[Category], root: str) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in cats:
        out.setdefault(c.cls + "s", []).append(_category_json(c, root))
    return out


def entity_json(e: Entity, base: str) -> dict[str, Any]:
    attrs = {k: (base + v if k in ("occi.core.source", "occi.core.target") else v)
             for k, v in e.attributes.items()}
    out: dict[str, Any] = {"kind": e.kind.id, "id": e.id, "attributes": attrs}
    if e.mixins:
        out["mixins"] = [m.id for m in e.mixins]
    if e.actions:
        out["actions"] = [a.id for a in e.actions]
    if e.title:
        out["title"] = e.title
    if e.source and e.target:
        out["source"] = {"location": base + e.source[0], "kind": e.source[1]}
        out["target"] = {"location": base + e.target[0], "kind": e.target[1]}
    elif e.links:
        out["links"] = [entity_json(link, base) for link in e.links]
    if e.source is None and e.attributes.get("occi.core.summary"):
        out["summary"] = str(e.attributes["occi.core.summary"])
    return out


def collection_json(entities: list[Entity], base: str) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in entities:
        out.setdefault("links" if e.source else "resources", []).append(entity_json(e, base))
    return out


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, allow_nan=False)
