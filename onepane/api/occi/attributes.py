"""Attribute values checked against their definitions (GFD.221/224 types, enum values,
immutability), with a 400 that names the attribute: `occi.compute.cores="abc"` must never
create anything."""

from __future__ import annotations

import math
from typing import Any

from .categories import Attribute, Category
from .entities import OcciError


def definitions(*categories: Category) -> dict[str, Attribute]:
    return {a.name: a for c in categories for a in c.attributes}


def check(values: dict[str, Any], defs: dict[str, Attribute], what: str) -> dict[str, Any]:
    """Every value typed as its definition says; returns the values, Integers as int."""
    out = {}
    for name, value in values.items():
        a = defs.get(name)
        if a is None:
            raise OcciError(400, f"attribute {name!r} is not defined for {what}")
        out[name] = typed(a, value)
    return out


def typed(a: Attribute, value: Any) -> Any:
    def bad(expected: str) -> OcciError:
        return OcciError(400, f"{a.name}: {value!r} is not {expected}")
    if a.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("an Integer")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise bad("an Integer")
        return int(value)
    if a.type == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(float(value)):
            raise bad("a finite number")
        return float(value)
    if a.type == "boolean":
        if not isinstance(value, bool):
            raise bad("a Boolean")
        return value
    if not isinstance(value, str):
        raise bad("a String")
    if a.type == "enum" and value not in a.values:
        raise bad(f"one of {', '.join(a.values)}")
    if len(value) > 4096:
        raise OcciError(400, f"{a.name}: longer than 4096 characters")
    return value


def changed_immutables(values: dict[str, Any], current: dict[str, Any],
                       defs: dict[str, Attribute]) -> list[str]:
    """The immutable attributes an update would change (the same value again is no change:
    a full representation sent back unchanged must be accepted)."""
    return [n for n, v in values.items()
            if n in defs and not defs[n].mutable and n in current and current[n] != v
            and not (isinstance(v, str) and v.endswith("/" + str(current[n])))]
