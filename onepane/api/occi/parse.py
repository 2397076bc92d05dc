"""Reading OCCI requests in any of the three renderings into one shape, with errors that say
what is wrong and where (the line, the header or the JSON path)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .entities import OcciError

_TERM = r"[a-zA-Z][a-zA-Z0-9_.-]*"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_CATEGORY = re.compile(rf'^\s*(?P<term>{_TERM})\s*;\s*scheme\s*=\s*"(?P<scheme>[^"]+)"\s*;'
                       rf'\s*class\s*=\s*(?P<q>"?)(?P<cls>kind|mixin|action)(?P=q)\s*(?P<rest>(;.*)?)$')
_ATTRIBUTE = re.compile(rf"^\s*(?P<name>[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)*)\s*=\s*"
                        rf"(?P<value>{_QUOTED}|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false)\s*$")
_LINK = re.compile(r'^\s*<(?P<target>[^>]+)>\s*;\s*rel\s*=\s*"(?P<rel>[^"]+)"(?P<rest>(\s*;.*)?)$')
_PARAM = re.compile(rf"\s*;\s*(?P<k>[a-zA-Z][a-zA-Z0-9_.-]*)\s*=\s*(?P<v>{_QUOTED}|[^;]+)")
HEADERS = ("category", "x-occi-attribute", "link", "x-occi-location")


@dataclass
class LinkRequest:
    target: str
    rel: str | None = None
    kind: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class CategoryRequest:
    """A category as a client rendered it (a filter, or a mixin it defines)."""

    id: str
    term: str
    scheme: str
    cls: str
    params: dict[str, str] = field(default_factory=dict)  # title, rel, location, ...


@dataclass
class Parsed:
    categories: list[CategoryRequest] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    mixins: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[LinkRequest] = field(default_factory=list)


def parse(media_type: str, body: bytes, headers: dict[str, list[str]]) -> Parsed:
    if media_type in ("application/occi+json", "application/json"):
        return parse_json(body)
    if media_type == "text/occi":
        lines = [(name, value) for name in HEADERS for raw in headers.get(name, [])
                 for value in split_values(raw)]
        return parse_lines(lines, "header")
    if media_type in ("text/plain", "text/occi+plain", ""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OcciError(400, f"the text/plain body is not UTF-8 (byte {exc.start})") from exc
        lines = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise OcciError(400, f"line {n}: expected 'Name: value', got {line[:80]!r}")
            lines.append((name.strip().lower(), value))
        return parse_lines(lines, "line")
    raise OcciError(415, f"unsupported Content-Type {media_type!r}; send text/plain, text/occi or "
                    "application/occi+json")


def split_values(raw: str) -> list[str]:
    """A text/occi header may carry several values separated by commas outside quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = esc = False
    for ch in raw:
        if esc:
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return [v for v in out if v.strip()]


def parse_lines(lines: list[tuple[str, str]], unit: str) -> Parsed:
    p = Parsed()
    for n, (name, value) in enumerate(lines, 1):
        where = f"{unit} {n} ({name.title()})"
        if name == "category":
            m = _CATEGORY.match(value)
            if not m:
                raise OcciError(400, f"{where}: malformed category {value.strip()[:100]!r}; expected "
                                'term; scheme="..."; class="kind|mixin|action"')
            cid = m["scheme"] + m["term"]
            {"kind": p.kinds, "mixin": p.mixins, "action": p.actions}[m["cls"]].append(cid)
            params = {k["k"].lower(): (attr_value(k["v"].strip()) if k["v"].strip().startswith('"')
                                       else k["v"].strip()) for k in _PARAM.finditer(m["rest"])}
            p.categories.append(CategoryRequest(cid, m["term"], m["scheme"], m["cls"],
                                                {k: str(v) for k, v in params.items()}))
        elif name == "x-occi-attribute":
            m = _ATTRIBUTE.match(value)
            if not m:
                raise OcciError(400, f"{where}: malformed attribute {value.strip()[:100]!r}; expected "
                                'name="string", name=number or name=true|false')
            p.attributes[m["name"]] = checked_value(m["name"], m["value"])
        elif name == "link":
            m = _LINK.match(value)
            if not m:
                raise OcciError(400, f"{where}: malformed link {value.strip()[:100]!r}; expected "
                                '<target>; rel="scheme#term"')
            link = LinkRequest(target=m["target"], rel=m["rel"])
            for param in _PARAM.finditer(m["rest"]):
                k, v = param["k"], param["v"].strip()
                if k == "category":
                    link.kind = attr_value(v) if v.startswith('"') else v
                elif k != "self":
                    link.attributes[k] = attr_value(v) if _ATTRIBUTE.match(f"{k}={v}") else v
            p.links.append(link)
        elif name == "x-occi-location":
            continue
        else:
            raise OcciError(400, f"{where}: unknown OCCI header {name!r}")
    return p


def checked_value(name: str, raw: str) -> Any:
    value = attr_value(raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise OcciError(400, f"{name}: {raw[:40]} is not a finite number")
    return value


def attr_value(raw: str) -> Any:
    if raw.startswith('"'):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if raw in ("true", "false"):
        return raw == "true"
    number = float(raw)
    return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Parsed:
    try:
        doc = json.loads(body or b"{}", parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OcciError(400, f"malformed JSON: {exc}") from exc
    except ValueError as exc:  # NaN, Infinity
        raise OcciError(400, f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise OcciError(400, "malformed JSON: nested too deeply") from exc
    if not isinstance(doc, dict):
        raise OcciError(400, "the JSON rendering must be an object")
    p = Parsed()
    if "action" in doc:
        p.actions.append(_string(doc, "action", "$"))
        p.attributes = _attributes(doc, "$")
        return p
    if "kind" in doc:
        p.kinds.append(_string(doc, "kind", "$"))
    mixins = doc.get("mixins", [])
    if not isinstance(mixins, list) or not all(isinstance(m, str) for m in mixins):
        raise OcciError(400, "$.mixins must be a list of category identifiers (scheme#term)")
    p.mixins = mixins
    p.attributes = _attributes(doc, "$")
    for key in ("title", "summary"):  # GFD.226 renders these beside the attributes too
        if isinstance(doc.get(key), str):
            p.attributes.setdefault(f"occi.core.{key}", doc[key])
    for key in ("source", "target"):
        if key in doc:
            ref = doc[key]
            if not isinstance(ref, dict) or not isinstance(ref.get("location"), str):
                raise OcciError(400, f"$.{key} must be an object with a string 'location'")
            p.attributes[f"occi.core.{key}"] = ref["location"]
    links = doc.get("links", [])
    if not isinstance(links, list):
        raise OcciError(400, "$.links must be a list")
    for i, link in enumerate(links):
        path = f"$.links[{i}]"
        if not isinstance(link, dict) or not isinstance(link.get("target"), dict) or \
                not isinstance(link["target"].get("location"), str):
            raise OcciError(400, f"{path}.target must be an object with a string 'location'")
        p.links.append(LinkRequest(target=link["target"]["location"], rel=link["target"].get("kind"),
                                   kind=link.get("kind"), attributes=_attributes(link, path)))
    return p


def _string(doc: dict[str, Any], key: str, path: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or "#" not in value:
        raise OcciError(400, f"{path}.{key} must be a category identifier such as "
                        "http://schemas.ogf.org/occi/infrastructure#compute")
    return value


def _attributes(doc: dict[str, Any], path: str) -> dict[str, Any]:
    attrs = doc.get("attributes", {})
    if not isinstance(attrs, dict):
        raise OcciError(400, f"{path}.attributes must be an object")
    for k, v in attrs.items():
        if not isinstance(v, str | int | float | bool) or v is None:
            raise OcciError(400, f"{path}.attributes.{k} must be a string, number or boolean")
        if isinstance(v, float) and not math.isfinite(v):
            raise OcciError(400, f"{path}.attributes.{k} is not a finite number")
    return dict(attrs)
