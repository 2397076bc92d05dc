"""Keyset pages, the one way every listing is paged: a cursor is the last item's key (and,
for sorted instance listings, its sort value), so a late page costs what the first did."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Select, select

from ..errors import InvalidInput
from ..model import Page
from ..store.db import Store

MAX_PAGE = 1000


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def encode_sort_cursor(value: Any, last_id: str) -> str:
    raw = json.dumps([str(value), last_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_sort_cursor(cursor: str) -> tuple[str, str]:
    """A page's end: (its sort value, its id); an old plain-id cursor still reads."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", field="cursor") from exc
    if raw.startswith("["):
        try:
            value, last = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise InvalidInput("malformed cursor", field="cursor") from exc
        if not isinstance(last, str) or not re.fullmatch(r"[a-z]+-[0-9a-f]+", last):
            raise InvalidInput("malformed cursor", field="cursor")
        return str(value), last
    last = decode_cursor(cursor)
    return last, last


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", field="cursor") from exc
    if not re.fullmatch(r"[a-z]+-[0-9a-f]+", value):
        raise InvalidInput("malformed cursor", field="cursor")
    return value


def every(fetch: Callable[..., Page[Any]], **kw: Any) -> Iterator[Any]:
    """All items of a paged listing (list_instances, list_volumes, ...), a page at a time."""
    cursor = None
    while True:
        page = fetch(limit=MAX_PAGE, cursor=cursor, **kw)
        yield from page.items
        if not (cursor := page.next_cursor):
            return


def page(store: Store, q: Select[Any], limit: int, view: Any, columns: bool = False) -> Page[Any]:
    """Run a query asked for `limit + 1` rows: the extra row only says another page exists."""
    with store.tx() as s:
        rows = list(s.execute(q).mappings()) if columns else list(s.scalars(q))
    items = [view(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].id) if len(rows) > limit else None
    return Page[Any](items=items, next_cursor=nxt)


def by_location(store: Store, table: Any, view: Any, location: str | None, limit: int,
                cursor: str | None) -> Page[Any]:
    """A page of a table's rows in id order, at one location or all: every resource that is
    listed by location (volumes, networks) is paged this one way."""
    limit = max(1, min(limit, MAX_PAGE))
    q = select(table).order_by(table.id).limit(limit + 1)
    if location:
        q = q.where(table.location == location)
    if cursor:
        q = q.where(table.id > decode_cursor(cursor))
    return page(store, q, limit, view)
