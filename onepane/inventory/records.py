"""Objects a standard front end keeps for its clients that change nothing in onepane by
themselves: an EC2 VPC (an address plan whose subnets are onepane networks), an internet
gateway, a route table, a DHCP option set. They are stored so that tools which make them
first (and tag them, and delete them) work; what they would do in a cloud is not pretended."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..errors import NotFound
from ..store.db import Store
from ..store.tables import RecordRow


@dataclass(frozen=True)
class Record:
    id: str
    kind: str
    attributes: dict[str, Any]
    tags: dict[str, str]
    created_at: datetime


def record_id(prefix: str) -> str:
    """EC2-shaped ids (`vpc-0a1b2c3d4e5f60718`): 17 hex digits."""
    return f"{prefix}-{os.urandom(9).hex()[:17]}"


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, kind: str, prefix: str, attributes: dict[str, Any]) -> Record:
        with self.store.tx() as s:
            row = RecordRow(id=record_id(prefix), kind=kind, attributes=attributes, tags={})
            s.add(row)
            s.flush()
            return _view(row)

    def find(self, kind: str, ids: list[str] | None = None, what: str | None = None) -> list[Record]:
        with self.store.tx() as s:
            rows = [_view(r) for r in s.scalars(select(RecordRow).where(RecordRow.kind == kind)
                                                .order_by(RecordRow.created_at))]
        if ids:
            if missing := set(ids) - {r.id for r in rows}:
                raise NotFound(f"the {what or kind} ID '{sorted(missing)[0]}' does not exist",
                               field=kind)
            rows = [r for r in rows if r.id in ids]
        return rows

    def get(self, kind: str, rid: str, what: str | None = None) -> Record:
        return self.find(kind, [rid], what)[0]

    def update(self, rid: str, **attributes: Any) -> Record:
        with self.store.tx() as s:
            row = s.get(RecordRow, rid)
            if row is None:
                raise NotFound(f"no {rid}", field="record")
            row.attributes = {**(row.attributes or {}), **attributes}
            return _view(row)

    def retag(self, rid: str, add: dict[str, str], remove: dict[str, str | None]) -> None:
        with self.store.tx() as s:
            row = s.get(RecordRow, rid)
            if row is None:
                raise NotFound(f"no {rid}", field="record")
            tags = {**(row.tags or {}), **add}
            for k, v in remove.items():
                if k in tags and (v is None or tags[k] == v):
                    del tags[k]
            row.tags = tags

    def delete(self, rid: str) -> None:
        with self.store.tx() as s:
            row = s.get(RecordRow, rid)
            if row is not None:
                s.delete(row)


def _view(r: RecordRow) -> Record:
    return Record(r.id, r.kind, dict(r.attributes or {}), dict(r.tags or {}), r.created_at)
