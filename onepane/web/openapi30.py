"""The API's OpenAPI 3.1 document as 3.0 for Swagger UI's page only.

Swagger UI renders a 3.1 document through a much slower path than a 3.0 one: /docs took
1.2-1.5 s after load for onepane's 200 KB document, 0.2-0.4 s for the same operations as 3.0
(issue 31). /openapi.json stays 3.1 for every tool; this copy only rewrites what 3.0 says
differently: a `null` branch of anyOf becomes `nullable`, numeric exclusive bounds become
3.0's booleans, `const` an enum of one, a schema's `examples` its `example`.
"""

from __future__ import annotations

import copy
from typing import Any


def as_30(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["openapi"] = "3.0.3"
    _walk(out.get("paths", {}))
    _walk(out.get("components", {}))
    return out


def _walk(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item)
        return
    if not isinstance(node, dict):
        return
    _schema_30(node)
    for value in node.values():
        _walk(value)


def _schema_30(s: dict[str, Any]) -> None:
    for key in ("anyOf", "oneOf"):
        branches = s.get(key)
        if isinstance(branches, list) and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            s["nullable"] = True
            if len(rest) == 1 and isinstance(rest[0], dict) and "$ref" not in rest[0]:
                del s[key]
                s.update({k: v for k, v in rest[0].items() if k not in s})
            else:
                s[key] = rest
    if s.get("type") == "null":
        s.pop("type")
        s["nullable"] = True
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = s.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            s[plain], s[bound] = value, True
    if "const" in s:
        s["enum"] = [s.pop("const")]
    examples = s.get("examples")
    if isinstance(examples, list) and examples and "schema" not in s and "in" not in s:
        s["example"] = examples[0]
        del s["examples"]
