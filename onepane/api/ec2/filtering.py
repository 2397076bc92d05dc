"""EC2's `Filter.N.Name` / `Filter.N.Value.M` on Describe* actions, one table per resource.

A table names each filter a resource takes and how to read its value(s) off one item of the
answer (most read a field of the item as EC2 shapes it, so a filter matches what the client
sees). `parse` refuses a filter the table does not name, listing the ones it does (EC2 answers
InvalidParameterValue; a silently ignored filter would answer everything); `keep` applies
them: the values of one filter are alternatives, different filters must all match, `*` and `?`
are wildcards. Tables with `tags` also take `tag:<key>`, `tag-key` and `tag-value`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .wire import Ec2Error, filters

T = TypeVar("T")
Getter = Callable[[Any], "str | Iterable[str]"]


@dataclass(frozen=True)
class FilterTable:
    fields: Mapping[str, Getter]
    tags: Callable[[Any], Mapping[str, str]] | None = None

    def parse(self, p: Mapping[str, Any]) -> dict[str, list[str]]:
        """The request's filters, each checked against the table."""
        flt = filters(dict(p))
        for name in flt:
            if name in self.fields or (self.tags is not None and (
                    name.startswith("tag:") or name in ("tag-key", "tag-value"))):
                continue
            raise Ec2Error("InvalidParameterValue", f"the filter {name!r} is invalid here; "
                           f"supported: {', '.join(self.names())}")
        return flt

    def names(self) -> list[str]:
        extra = ["tag:<key>", "tag-key", "tag-value"] if self.tags is not None else []
        return [*sorted(self.fields), *extra]

    def keep(self, flt: Mapping[str, list[str]], item: Any) -> bool:
        for name, patterns in flt.items():
            if name in self.fields:
                value = self.fields[name](item)
                values = [value] if isinstance(value, str) else list(value)
            elif self.tags is not None:
                values = _tag_values(name, self.tags(item))
            else:  # parse() let no such name through
                return False
            if not any(fnmatch.fnmatchcase(str(v), pat) for v in values for pat in patterns):
                return False
        return True

    def allows(self, flt: Mapping[str, list[str]], name: str, value: str) -> bool:
        """Whether filter `name` lets `value` through (it does when it is not given): for
        what a Describe can skip before it builds the items."""
        return name not in flt or any(fnmatch.fnmatchcase(value, pat) for pat in flt[name])

    def apply(self, flt: Mapping[str, list[str]], items: Iterable[T]) -> list[T]:
        return [i for i in items if self.keep(flt, i)]


def _tag_values(name: str, tags: Mapping[str, str]) -> list[str]:
    if name == "tag-key":
        return list(tags)
    if name == "tag-value":
        return list(tags.values())
    key = name[4:]  # tag:<key>: the value of that tag, if the item has it
    return [tags[key]] if key in tags else []


def key(name: str) -> Getter:
    """The item's field `name`, as text ("" when it has none)."""
    return lambda item: "" if item.get(name) is None else str(item[name])


def each(listed: str, name: str) -> Getter:
    """Field `name` of every entry of the item's list `listed` (e.g. attachmentSet) that has
    one."""
    return lambda item: [str(entry[name]) for entry in item.get(listed) or []
                         if entry.get(name) is not None]


def tag_set(item: Mapping[str, Any]) -> dict[str, str]:
    """The tags of an item shaped as EC2 answers (`tagSet`: key/value pairs)."""
    return {t["key"]: t["value"] for t in item.get("tagSet") or []}


def constant(value: str) -> Getter:
    return lambda _item: value
