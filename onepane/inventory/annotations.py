"""What standard front ends keep about resources beyond onepane's own model: extra attributes a
client may change (OCCI's title and summary), categories a client defined (OCCI user
mixins), and which resources carry them. Kept in the store, so every onepane node and every
restart sees the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..errors import Conflict, NotFound
from ..store.db import Store
from ..store.tables import AnnotationRow, CategoryDefRow


@dataclass(frozen=True)
class CategoryDef:
    id: str
    term: str
    scheme: str
    title: str
    location: str
    depends: tuple[str, ...]


@dataclass
class Annotation:
    attributes: dict[str, Any]
    categories: list[str]


class Annotations:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- per resource ---------------------------------------------------------------------

    def all(self) -> dict[str, Annotation]:
        with self.store.tx() as s:
            return {r.resource: Annotation(dict(r.attributes or {}), list(r.categories or []))
                    for r in s.scalars(select(AnnotationRow))}

    def get(self, resource: str) -> Annotation:
        with self.store.tx() as s:
            row = s.get(AnnotationRow, resource)
            return Annotation(dict(row.attributes or {}), list(row.categories or [])) \
                if row else Annotation({}, [])

    def put(self, resource: str, attributes: dict[str, Any] | None = None,
            categories: list[str] | None = None) -> None:
        """Replace what is given (None keeps it); an empty annotation is removed."""
        with self.store.tx() as s:
            row = s.get(AnnotationRow, resource)
            if row is None:
                row = AnnotationRow(resource=resource, attributes={}, categories=[])
                s.add(row)
            if attributes is not None:
                row.attributes = dict(attributes)
            if categories is not None:
                row.categories = list(dict.fromkeys(categories))
            if not row.attributes and not row.categories:
                s.delete(row)

    def forget(self, resource: str) -> None:
        with self.store.tx() as s:
            row = s.get(AnnotationRow, resource)
            if row is not None:
                s.delete(row)

    # ---- client-defined categories --------------------------------------------------------

    def categories(self) -> list[CategoryDef]:
        with self.store.tx() as s:
            return [_def(r) for r in s.scalars(select(CategoryDefRow).order_by(
                CategoryDefRow.created_at))]

    def define(self, d: CategoryDef) -> None:
        with self.store.tx() as s:
            if s.get(CategoryDefRow, d.id) is not None:
                raise Conflict(f"category {d.id} exists", field="category")
            if s.scalar(select(CategoryDefRow.id).where(CategoryDefRow.location == d.location)):
                raise Conflict(f"location {d.location} is taken", field="location")
            s.add(CategoryDefRow(id=d.id, term=d.term, scheme=d.scheme, title=d.title,
                                 location=d.location, depends=list(d.depends)))

    def undefine(self, category_id: str) -> None:
        """Remove a definition and every association with it."""
        with self.store.tx() as s:
            row = s.get(CategoryDefRow, category_id)
            if row is None:
                raise NotFound(f"no user-defined category {category_id}", field="category")
            s.delete(row)
            for ann in s.scalars(select(AnnotationRow)):
                if category_id in (ann.categories or []):
                    ann.categories = [c for c in ann.categories if c != category_id]
                    if not ann.categories and not ann.attributes:
                        s.delete(ann)


def _def(r: CategoryDefRow) -> CategoryDef:
    return CategoryDef(r.id, r.term, r.scheme, r.title, r.location, tuple(r.depends or ()))
