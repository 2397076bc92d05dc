"""The EC2 query protocol's wire format: flat form parameters in, namespaced XML out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

API_VERSION = "2016-11-15"
XMLNS = f"http://ec2.amazonaws.com/doc/{API_VERSION}/"


class Ec2Error(Exception):
    """An error with its EC2 code, e.g. InvalidInstanceID.NotFound; HTTP status as EC2 sends it."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def decode_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`Filter.1.Value.2=x` -> {"Filter": [{"Value": [..., "x"]}]}: numbered members become lists
    ordered by their number, dotted names become nested dicts."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise Ec2Error("InvalidParameterValue", f"parameter {key!r} clashes with another")
        if isinstance(node.get(parts[-1]), dict):
            raise Ec2Error("InvalidParameterValue", f"parameter {key!r} clashes with another")
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def members(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name, [])
    if not isinstance(value, list):
        raise Ec2Error("InvalidParameterValue", f"{name} must be given as {name}.1, {name}.2, ...")
    return value


def required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise Ec2Error("MissingParameter", f"the request must contain the parameter {name}")
    return value


def integer(params: dict[str, Any], name: str, default: int | None = None, *, low: int = 0,
            high: int = 2**31) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise Ec2Error("InvalidParameterValue", f"{name} must be an integer, not {value!r}") from exc
    if not low <= n <= high:
        raise Ec2Error("InvalidParameterValue", f"{name} must be between {low} and {high}")
    return n


def filters(params: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in members(params, "Filter"):
        if not isinstance(f, dict) or "Name" not in f:
            raise Ec2Error("InvalidParameterValue", "each Filter.N needs a Name")
        out.setdefault(f["Name"], []).extend(members(f, "Value"))
    return out


def render(action: str, body: dict[str, Any]) -> str:
    """`body` maps element names to str/int/bool/datetime, dicts (nested elements), lists (each
    becomes an <item>) or None (left out)."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<{action}Response xmlns="{XMLNS}">',
             f"<requestId>{uuid.uuid4()}</requestId>"]
    _write(parts, body)
    parts.append(f"</{action}Response>")
    return "".join(parts)


def render_error(err: Ec2Error) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>"
            f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>")


def _write(parts: list[str], node: dict[str, Any]) -> None:
    for name, value in node.items():
        if value is None:
            continue
        if isinstance(value, dict):
            parts.append(f"<{name}>")
            _write(parts, value)
            parts.append(f"</{name}>")
        elif isinstance(value, list):
            parts.append(f"<{name}>")
            for item in value:
                parts.append("<item>")
                if isinstance(item, dict):
                    _write(parts, item)
                else:
                    parts.append(_scalar(item))
                parts.append("</item>")
            parts.append(f"</{name}>")
        else:
            parts.append(f"<{name}>{_scalar(value)}</{name}>")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return escape(str(value))
