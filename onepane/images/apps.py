"""Applications: the systems of one OVF VirtualSystemCollection, imported as one catalog image
each and grouped (their `appliance`), shown as one thing with its tiers in start order.

The start order is the collection's StartupSection (ovf.StartupItem): systems of a lower order
start first; those of the same order together; each after its delay. A member the section
does not name has no order (it starts last). The application's id is the group id the import
gave its members; it is never a separate row, so deleting or replicating a member is what it
always was.
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from .catalog import CatalogImage


def applications(images: list[CatalogImage]) -> list[dict[str, Any]]:
    groups: dict[str, list[CatalogImage]] = {}
    for img in images:
        if img.appliance:
            groups.setdefault(str(img.appliance["id"]), []).append(img)
    return [_application(members) for members in groups.values()]


def application(images: list[CatalogImage], app_id: str) -> dict[str, Any]:
    for app in applications(images):
        if app["id"] == app_id:
            return app
    raise NotFound(f"no application {app_id!r} (an OVA with a VirtualSystemCollection "
                   "imported makes one)", field="app")


def _application(members: list[CatalogImage]) -> dict[str, Any]:
    meta = members[0].appliance or {}
    by_id = {m.id: m for m in members}
    startup = meta.get("startup") or [{"image": m.id, "name": m.name, "order": None}
                                      for m in members]
    tiers = []
    for line in startup:
        img = by_id.get(line["image"])
        if img is None:
            continue
        tiers.append({**line, "cpus": img.cpus, "memory_mb": img.memory_mb,
                      "disks": len(img.disks), "networks": img.networks,
                      "ready_at": sorted(r.location for r in img.replicas if r.state == "ready")})
    return {"id": meta.get("id"), "name": meta.get("name"), "collection": meta.get("collection"),
            "tiers": tiers,
            # where every tier is ready: where the whole application can be placed
            "ready_at": sorted(set.intersection(*(set(t["ready_at"]) for t in tiers)))
            if tiers else []}
