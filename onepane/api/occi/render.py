"""OCCI 1.2 renderings: text/plain (in the body), text/occi (in headers), application/occi+json,
and text/uri-list for collections."""

from __future__ import annotations

import json
from typing import Any

from .categories import Category
from .entities import Entity

TEXT_PLAIN, TEXT_OCCI, JSON, URI_LIST = "text/plain", "text/occi", "application/occi+json", "text/uri-list"
Lines = list[tuple[str, str]]


# ---- text -------------------------------------------------------------------------------------

def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return quote(str(value))


def category_line(c: Category, base: str, *, full: bool) -> str:
    parts = [c.term, f"scheme={quote(c.scheme)}", f"class={quote(c.cls)}"]
    if c.title:
        parts.append(f"title={quote(c.title)}")
    if full:
        rel = c.parent or (c.applies[0] if c.applies else None)
        if rel:
            parts.append(f"rel={quote(rel)}")
        if c.location:
            parts.append(f"location={quote(base + c.location)}")
        if c.attributes:
            parts.append("attributes=" + quote(" ".join(
                a.name + ("{required}" if a.required else "") + ("" if a.mutable else "{immutable}")
                for a in c.attributes)))
        if c.actions:
            parts.append(f"actions={quote(' '.join(c.actions))}")
    return "; ".join(parts)


def categories_text(cats: list[Category], base: str) -> Lines:
    return [("Category", category_line(c, base, full=True)) for c in cats]


def entity_text(e: Entity, base: str) -> Lines:
    lines: Lines = [("Category", category_line(c, base, full=False)) for c in [e.kind, *e.mixins]]
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
    return {a.name: {"mutable": a.mutable, "required": a.required, "type": a.type,
                     **({"description": a.description} if a.description else {})}
            for a in c.attributes}


def categories_json(cats: list[Category], base: str) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"kinds": [], "mixins": [], "actions": []}
    for c in cats:
        item: dict[str, Any] = {"term": c.term, "scheme": c.scheme, "title": c.title,
                                "attributes": _attr_defs(c)}
        if c.cls == "kind":
            item.update(actions=list(c.actions), **({"parent": c.parent} if c.parent else {}),
                        **({"location": base + c.location} if c.location else {}))
        elif c.cls == "mixin":
            item.update(actions=list(c.actions), depends=[c.parent] if c.parent else [],
                        applies=list(c.applies))
        out[c.cls + "s"].append(item)
    return out


def entity_json(e: Entity, base: str) -> dict[str, Any]:
    attrs = {k: (base + v if k in ("occi.core.source", "occi.core.target") else v)
             for k, v in e.attributes.items()}
    out: dict[str, Any] = {"kind": e.kind.id, "mixins": [m.id for m in e.mixins], "attributes": attrs,
                           "actions": [a.id for a in e.actions], "id": e.id, "title": e.title,
                           "location": base + e.location}
    if e.source and e.target:
        out["source"] = {"location": base + e.source[0], "kind": e.source[1]}
        out["target"] = {"location": base + e.target[0], "kind": e.target[1]}
    else:
        out["links"] = [entity_json(link, base) for link in e.links]
    return out


def collection_json(entities: list[Entity], base: str, *, links: bool) -> dict[str, Any]:
    return {"links" if links else "resources": [entity_json(e, base) for e in entities]}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1)
