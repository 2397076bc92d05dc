"""OVF ProductSection properties set at boot: checked against their type and qualifiers.

DSP0243 types (string, boolean, uint8..uint64, sint8..sint64, real32/real64) and the CIM
qualifiers producers use (MaxLen, MinLen, ValueMap{...}). Only user-configurable properties may
be set; a key may be given as written (`hostname`) or in full (`com.cisco.csr1000v.hostname.1`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from ..errors import InvalidInput

_INT_RANGES = {f"{sign}int{bits}": ((0, 2**bits - 1) if sign == "u" else
                                    (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
               for sign in ("u", "s") for bits in (8, 16, 32, 64)}


def resolve(properties: list[dict[str, Any]], values: dict[str, str]) -> dict[str, str]:
    """Every property's value for one instance: the defaults, with `values` applied."""
    result = {p["id"]: p.get("default", "") for p in properties}
    for key, value in values.items():
        matches = [p for p in properties if key in (p["id"], p["key"])]
        if not matches:
            known = ", ".join(p["key"] for p in properties if p.get("user_configurable"))
            raise InvalidInput(f"no property {key!r} in the image; settable: {known or 'none'}",
                               field=f"properties.{key}")
        if len(matches) > 1:
            raise InvalidInput(f"property {key!r} is ambiguous; use one of "
                               f"{', '.join(p['id'] for p in matches)}", field=f"properties.{key}")
        prop = matches[0]
        if not prop.get("user_configurable"):
            raise InvalidInput(f"property {key!r} is not user-configurable",
                               field=f"properties.{key}")
        result[prop["id"]] = check(prop, value, f"properties.{key}")
    return result


def check(prop: dict[str, Any], value: str, field: str) -> str:
    ptype = prop.get("type") or "string"
    quals = prop.get("qualifiers") or ""

    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"property {prop['key']}: {value!r} {why}", field=field)

    if ptype == "boolean":
        if value.lower() not in ("true", "false"):
            raise bad("is not true or false")
        value = value.lower()
    elif ptype in _INT_RANGES:
        lo, hi = _INT_RANGES[ptype]
        if not re.fullmatch(r"[+-]?\d+", value) or not lo <= int(value) <= hi:
            raise bad(f"is not a {ptype} ({lo}..{hi})")
    elif ptype in ("real32", "real64"):
        try:
            float(value)
        except ValueError as exc:
            raise bad(f"is not a {ptype}") from exc
    for name, n in re.findall(r"(MaxLen|MinLen)\((\d+)\)", quals):
        if name == "MaxLen" and len(value) > int(n):
            raise bad(f"is longer than {n} characters")
        if name == "MinLen" and len(value) < int(n):
            raise bad(f"is shorter than {n} characters")
    choices = re.search(r"ValueMap\{([^}]*)\}", quals)
    if choices:
        allowed = [c.strip().strip('"') for c in choices.group(1).split(",")]
        if value not in allowed:
            raise bad(f"is not one of {', '.join(allowed)}")
    return value


NS_ENV = "http://schemas.dmtf.org/ovf/environment/1"


def environment(system_id: str, values: dict[str, str]) -> str:
    """The OVF environment document (DSP0243 §11) a guest reads its properties from: what
    vSphere hands over as guestinfo.ovfEnv or an ISO, and onepane as user data."""
    ET.register_namespace("oe", NS_ENV)
    env = ET.Element(f"{{{NS_ENV}}}Environment", {f"{{{NS_ENV}}}id": system_id})
    platform = ET.SubElement(env, f"{{{NS_ENV}}}PlatformSection")
    ET.SubElement(platform, f"{{{NS_ENV}}}Kind").text = "onepane"
    section = ET.SubElement(env, f"{{{NS_ENV}}}PropertySection")
    for key, value in values.items():
        ET.SubElement(section, f"{{{NS_ENV}}}Property",
                      {f"{{{NS_ENV}}}key": key, f"{{{NS_ENV}}}value": value})
    return ET.tostring(env, xml_declaration=True, encoding="unicode")
