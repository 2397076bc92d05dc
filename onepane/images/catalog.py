"""The image catalog: logical images, their disks stored once by content, and where they are.

A logical image (name, version, OS, CPUs, memory, disks) is imported once, from an OVA or a
plain disk in any format qemu-img reads. Its disks live in `blobs/sha256/<digest>`, so the
same disk imported twice is stored once. Replicating it to a location converts each disk to
the first format that location takes (once per format, cached beside the blob), copies it
there as a job of that location, checks the digest at the other end, and registers it.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
from dataclasses import asdict
from datetime import datetime
from operator import methodcaller
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound, OnepaneError
from ..events import EventLog
from ..inventory.jobs import JobRunner, chain_key
from ..inventory.views import job_view
from ..model import UNFINISHED, Job, JobStatus, new_id, slug
from ..providers.base import Feature, Provider
from ..providers.copy import sha256_of
from ..providers.registry import Registry
from ..store.tables import CatalogImageRow, DeploymentRow, ImageReplicaRow, JobRow
from . import containers, export, inspect, ova, ovf, properties
from .blobs import BlobStore


def _member_name(name: str, system_id: str) -> str:
    """A collection member's catalog name: the appliance's name and the system's id."""
    return f"{name}-{slug(system_id)}"[:63].rstrip("-.") if name else slug(system_id)[:63]


def _shown(prop: dict[str, Any]) -> dict[str, Any]:
    """A property as the API shows it: a password's default is never returned."""
    return {**prop, "default": "********" if prop.get("password") and prop.get("default")
            else prop.get("default", "")}


def _ovf_meta(desc: ovf.OvfPackage, vs: ovf.VirtualSystem,
              per_option: dict[str | None, ovf.Hardware], chosen: str | None,
              blank: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": desc.version, "system_id": vs.id, "os_id": vs.os_id,
        "annotation": vs.annotation, "eulas": vs.eulas, "default_option": chosen,
        "options": [{"id": o.id, "label": o.label, "description": o.description,
                     "default": o.id == desc.default_option} for o in desc.options],
        "hardware": {(k or ""): asdict(h) for k, h in per_option.items()},
        "properties": [asdict(p) for p in [*desc.properties, *vs.properties]],
        "blank_disks": blank,
    }


def _twin_key(row: CatalogImageRow) -> tuple[Any, ...]:
    return (row.name, row.version, row.source, row.cpus, row.memory_mb,
            tuple(d["sha256"] for d in row.disks), (row.ovf or {}).get("default_option"))


def _stored_twin(s: Session, rows: list[CatalogImageRow]) -> str | None:
    """The id of the stored image that these new rows repeat exactly (same name, version,
    hardware and disk contents, every member of an appliance), if any."""
    firsts: list[str] = []
    for row in rows:
        stored = s.scalars(select(CatalogImageRow).where(
            CatalogImageRow.name == row.name, CatalogImageRow.version == row.version)).all()
        twin = next((t for t in stored if _twin_key(t) == _twin_key(row)), None)
        if twin is None:
            return None
        firsts.append(twin.id)
    return firsts[0] if firsts else None


class Replica(BaseModel):
    location: str
    state: str
    format: str | None
    progress: float
    provider_image_id: str | None
    error: str | None
    bootable: bool = Field(default=False, description="an instance can boot from it there")
    not_bootable_because: str | None = None


class CatalogImage(BaseModel):
    id: str
    name: str
    version: str
    os: str | None
    cpus: int
    memory_mb: int
    disks: list[dict[str, Any]]
    networks: list[str]
    product: dict[str, Any]
    source: str
    replicas: list[Replica]
    deployment_option: str | None = None  # the one this image's cpus/memory/disks follow
    deployment_options: list[dict[str, Any]] = []
    properties: list[dict[str, Any]] = []
    eulas: list[str] = []
    appliance: dict[str, Any] | None = None  # the systems imported together from one collection
    warnings: list[str] = []
    ovf: dict[str, Any] | None = None
    reused: bool = Field(default=False, description="an import that repeated a stored image "
                         "(same name, version and content) returns that image with this set")
    created_at: datetime | None = None


class BootImage(BaseModel):
    """A catalog image as one location boots it."""

    provider_image_id: str
    deployment_option: str | None
    user_data: str | None  # the OVF environment document, when the image has properties
    cpus: int  # what the deployment option asks for, for `--size auto`
    memory_mb: int
    extra_disks: list[int] = []  # capacities (bytes) of the option's disks after the boot disk
    nics: int = 1


def _ready_replica(img: CatalogImage, location: str) -> Replica:
    rep = next((r for r in img.replicas if r.location == location), None)
    if rep is None or rep.state != "ready" or not rep.provider_image_id:
        state = rep.state if rep else "not replicated"
        raise InvalidInput(f"image {img.name} ({img.id}) is {state} at {location}: replicate "
                           f"it first (onepane images replicate {img.id} --to {location})",
                           field="image")
    return rep


def _deployment_option(img: CatalogImage, meta: dict[str, Any], option: str | None) -> str | None:
    """The caller's option, checked, or the descriptor's default."""
    known = [o["id"] for o in meta.get("options", [])]
    if option is not None and option not in known:
        raise InvalidInput(f"no deployment option {option!r} in image {img.name}; it has: "
                           f"{', '.join(known) or 'none'}", field="deployment_option")
    return option or meta.get("default_option")


def _hardware(img: CatalogImage, meta: dict[str, Any], chosen: str | None) -> dict[str, Any]:
    """CPUs, memory, the extra disks' capacities and the NIC count the option asks for. Only
    the boot disk is replicated; the option's other disks start blank at their size."""
    hw = meta.get("hardware", {}).get(chosen or "") or {}
    capacity = {d.get("id"): d.get("capacity_bytes") or d.get("virtual_size") or 0
                for d in [*img.disks, *meta.get("blank_disks", [])]}
    boot_disk = img.disks[0].get("id") if img.disks else None
    extra = [capacity.get(d) or 0 for d in hw.get("disks", []) if d != boot_disk]
    return {"cpus": hw.get("cpus") or img.cpus,
            "memory_mb": (hw.get("memory_bytes") or 0) // 2**20 or img.memory_mb,
            "extra_disks": [b for b in extra if b > 0],
            "nics": max(1, len(hw.get("nics") or img.networks or [""]))}


class Catalog:
    def __init__(self, events: EventLog, registry: Registry, runner: JobRunner,
                 state_dir: Path) -> None:
        self.events = events
        self.registry = registry
        self.runner = runner
        self.store = BlobStore(state_dir / "blobs")
        self.blobs = self.store.root  # scratch folders for uploads live beside the blobs
        runner.register("image.replicate", self._do_replicate, self._replicate_failed)

    # ---- import --------------------------------------------------------------------------

    def import_file(self, path: Path, name: str, version: str = "1",
                    digest: str | None = None, deployment_option: str | None = None,
                    label: str | None = None) -> CatalogImage:
        """An OVA (tar, descriptor first; gzip-compressed too) or a plain disk image, told apart
        by content. `digest` is the file's SHA-256 if the caller computed it on the way in; a
        plain disk is then moved into the store rather than read twice more (hash, copy). An
        OVA holding a VirtualSystemCollection becomes one catalog image per system, grouped
        as one appliance; the first is returned, naming the others."""
        label = label or path.name
        with path.open("rb") as f:
            head = f.read(4096)
        if ova.looks_like_descriptor(head):
            raise InvalidInput(f"{label} is an OVF descriptor without its files: import the OVA, "
                               "or give the CLI the descriptor (or its folder), which packs it "
                               "with the files it references", field="file")
        with tempfile.TemporaryDirectory(dir=self.blobs, prefix=".import-") as tmp:
            if containers.looks_like_container_archive(path):
                rows = [self._container_row(path, Path(tmp), name, version, label, digest)]
            elif ova.is_gzip(path) or tarfile.is_tarfile(path):
                pkg = ova.read_ova(path, Path(tmp) / "ova", source=label)
                rows = self._rows_from_package(pkg, name, version, deployment_option)
            else:
                if deployment_option:
                    raise InvalidInput("a plain disk has no deployment options",
                                       field="deployment_option")
                found = inspect.check(path, label, field="file")
                rows = [CatalogImageRow(
                    id=new_id("img"), name=name or path.stem, version=version, os=None, cpus=1,
                    memory_mb=512, disks=[self.store.keep(path, found, digest)], networks=[],
                    product={}, source="disk")]
        with self.events.tx() as s:
            same = _stored_twin(s, rows)
            if same is not None:  # a retried or repeated import: the image it made, not a twin
                self.events.emit("image.import.reused", f"{label}: same content as image "
                                 f"{rows[0].name} {rows[0].version} ({same}); kept that one",
                                 subject=same, session=s)
                return self.get(same).model_copy(update={"reused": True})
            for row in rows:
                s.add(row)
                self.events.emit("image.imported", f"image {row.name} {row.version} ({row.id}) "
                                 f"imported from {row.source}", subject=row.id, session=s,
                                 data={"warnings": row.warnings or []})
        return self.get(rows[0].id)

    def _container_row(self, path: Path, tmp: Path, name: str, version: str, label: str,
                       digest: str | None) -> CatalogImageRow:
        """A container image archive, checked; an OCI layout gets Docker's manifest added (in a
        copy: the caller's file is never changed)."""
        image = containers.check_archive(path, label)
        if image.docker_manifest is not None:
            copy = tmp / "with-manifest.tar"
            containers.with_docker_manifest(path, copy, image.docker_manifest)
            path, digest = copy, sha256_of(copy)
        entry = self.store.keep(path, inspect.Inspected(containers.FORMAT, image.size), digest)
        default = (image.tags[0].rsplit(":", 1)[0].rsplit("/", 1)[-1] if image.tags else
                   path.stem)
        return CatalogImageRow(
            id=new_id("img"), name=name or default, version=version, os="linux container",
            cpus=1, memory_mb=128, disks=[{**entry, "container": image.as_meta()}],
            networks=[], product={}, source="container")

    def _rows_from_package(self, pkg: ova.Package, name: str, version: str,
                           option: str | None) -> list[CatalogImageRow]:
        desc = pkg.descriptor
        chosen = desc.option(option)
        group = new_id("app") if desc.collection is not None else None
        rows = []
        systems: list[str] = []  # the system each row is
        for vs in desc.systems:
            per_option: dict[str | None, ovf.Hardware] = \
                {o.id: vs.hardware(o.id) for o in desc.options} or {None: vs.hardware()}
            hw = vs.hardware(chosen)
            wanted = list(dict.fromkeys(d for h in per_option.values() for d in h.disks))
            disks, blank = [], []
            for disk_id in wanted or [d.id for d in desc.disks]:
                d = desc.disk(disk_id)
                ref = desc.file(d.file_ref) if d else None
                if d is None:
                    continue
                if ref is None:
                    blank.append({"id": d.id, "capacity_bytes": d.capacity_bytes,
                                  "capacity": d.capacity, "units": d.capacity_units})
                    continue
                entry = self.store.keep(pkg.directory / ref.href, pkg.disks[d.id])
                disks.append({**entry, "id": d.id, "capacity_bytes": d.capacity_bytes})
            if not disks:
                continue
            systems.append(vs.id)
            member = name if len(desc.systems) == 1 else _member_name(name, vs.id)
            rows.append(CatalogImageRow(
                id=new_id("img"), name=member or vs.name, version=version,
                os=vs.os_description, cpus=hw.cpus,
                memory_mb=max(1, hw.memory_bytes // 2**20) if hw.memory_bytes else 512,
                disks=disks, networks=hw.nics, product=vs.product, source="ova",
                ovf=_ovf_meta(desc, vs, per_option, chosen, blank),
                warnings=list(pkg.warnings)))
        if not rows:
            raise InvalidInput("the package has no disk", field="file")
        if group is not None:
            members = [r.id for r in rows]
            startup = _startup(desc, dict(zip(systems, rows, strict=True)))
            for r in rows:
                r.appliance = {"id": group, "name": name or desc.collection,
                               "collection": desc.collection, "members": members,
                               "startup": startup}
        return rows

    # ---- queries -------------------------------------------------------------------------

    def all(self) -> list[CatalogImage]:
        with self.events.store.tx() as s:
            ids = list(s.scalars(select(CatalogImageRow.id).order_by(CatalogImageRow.id)))
        return [self.get(i) for i in ids]

    def get(self, image_id: str) -> CatalogImage:
        with self.events.store.tx() as s:
            row = s.get(CatalogImageRow, image_id)
            if row is None:
                raise NotFound(f"no image {image_id!r} in the catalog", field="image")
            reps = list(s.scalars(select(ImageReplicaRow).where(
                ImageReplicaRow.image_id == image_id).order_by(ImageReplicaRow.location)))
            meta = row.ovf or {}
            return CatalogImage(
                id=row.id, name=row.name, version=row.version, os=row.os, cpus=row.cpus,
                memory_mb=row.memory_mb, disks=list(row.disks), networks=list(row.networks),
                product=row.product, source=row.source,
                replicas=[Replica(location=r.location, state=r.state, format=r.format,
                                  progress=r.progress, provider_image_id=r.provider_image_id,
                                  error=r.error, **self._bootability(r)) for r in reps],
                deployment_option=meta.get("default_option"),
                deployment_options=meta.get("options", []),
                properties=[_shown(p) for p in meta.get("properties", [])],
                eulas=meta.get("eulas", []), appliance=row.appliance,
                warnings=list(row.warnings or []), ovf=meta or None,
                created_at=row.created_at)

    def _bootability(self, rep: ImageReplicaRow) -> dict[str, Any]:
        """Whether an instance can boot from this replica, and if not, the reason to show."""
        try:
            missing = self.registry.get(rep.location).capabilities.missing
        except NotFound:
            return {"bootable": False, "not_bootable_because": "the location is not running"}
        if Feature.boot_images in missing:
            return {"bootable": False, "not_bootable_because": missing[Feature.boot_images]}
        if rep.state != "ready":
            return {"bootable": False, "not_bootable_because": f"the replica is {rep.state}"}
        return {"bootable": True, "not_bootable_because": None}

    def boot_image(self, image_id: str, location: str, option: str | None,
                   values: dict[str, str]) -> BootImage:
        """What `location` boots for a catalog image: its replica there, the deployment option
        checked, and the properties (defaults, then the caller's values, each checked against
        its type) as an OVF environment document."""
        img = self.get(image_id)
        rep = _ready_replica(img, location)
        meta = img.ovf or {}
        chosen = _deployment_option(img, meta, option)
        user_data = None
        if meta.get("properties") or values:
            resolved = properties.resolve(meta.get("properties", []), values)
            user_data = properties.environment(meta.get("system_id") or img.name, resolved)
        return BootImage(provider_image_id=rep.provider_image_id or "",
                         deployment_option=chosen, user_data=user_data,
                         **_hardware(img, meta, chosen))

    # ---- export --------------------------------------------------------------------------

    def export(self, image_id: str, out: Path, fmt: str = "ova", ovf_version: str = "1.0") -> Path:
        """The image as an OVA (OVF `ovf_version`, disks as streamOptimized VMDK) or, for an
        image of one disk, as that disk in `fmt`."""
        return export.write(self.get(image_id), self.store, out, fmt, ovf_version)

    def export_application(self, app_id: str, out_dir: Path, ovf_version: str = "1.0") -> Path:
        """An application (an imported collection) as one OVA in `out_dir`, named after it,
        its start order kept."""
        app, members = self._application(app_id)
        name = app["name"] or app_id
        return export.write_application(name, app["collection"] or app_id, members,
                                        app["tiers"], self.store, out_dir / f"{name}.ova",
                                        ovf_version)

    def capture(self, location: str, provider_id: str, name: str) -> CatalogImage:
        """An instance's disk as a catalog image (flattened, inspected like any upload) that
        is then replicated back to its location, so the image boots where it came from."""
        provider = self.registry.get(location)
        provider.require(Feature.capture_image, "instance")
        with tempfile.TemporaryDirectory(dir=self.blobs, prefix=".capture-") as tmp:
            disk_path = Path(tmp) / "disk"
            self.registry.run(location, lambda p: p.export_disk(provider_id, disk_path),
                              timeout=1800)
            img = self.import_file(disk_path, name, label=f"{provider_id} at {location}")
        if not img.replicas or location not in {r.location for r in img.replicas}:
            self.replicate(img.id, [location])
        return self.get(img.id)

    # ---- deletion ------------------------------------------------------------------------

    def delete(self, image_id: str) -> None:
        """The image out of the catalog and off every location that holds a replica; its disks
        off onepane's store unless another image has the same content. Refused, with nothing
        removed, while anything still needs it: a deployment whose spec names it, a
        replication under way, an instance made from a replica (each location is asked
        before any replica is removed), a location holding one that is not running, or an
        appliance's other members (an application's images go together:
        delete_application)."""
        img = self.get(image_id)
        others = self._members(img)
        if others:
            raise Conflict(f"image {img.id} is one system of an application imported with "
                           f"{', '.join(others)}: its images are deleted together "
                           f"(onepane apps delete {img.appliance and img.appliance.get('id')})",
                           field="image")
        self._delete([img])

    def delete_application(self, app_id: str) -> list[str]:
        """Every image of an application (an imported collection), as delete does for one:
        all of them or, when one is still needed, none. The ids deleted."""
        _, imgs = self._application(app_id)
        self._delete(imgs)
        return [i.id for i in imgs]

    def _application(self, app_id: str) -> tuple[dict[str, Any], list[CatalogImage]]:
        """An application's view (images/apps.py) and its members' images, in start order."""
        from . import apps
        app = apps.application(self.all(), app_id)
        return app, [self.get(t["image"]) for t in app["tiers"]]

    def _members(self, img: CatalogImage) -> list[str]:
        if not img.appliance:
            return []
        with self.events.store.tx() as s:
            return sorted(r.id for r in s.scalars(select(CatalogImageRow))
                          if r.id != img.id
                          and (r.appliance or {}).get("id") == img.appliance.get("id"))

    def _delete(self, imgs: list[CatalogImage]) -> None:
        for img in imgs:
            self._refuse_needed(img)
        holders = [(img, r) for img in imgs for r in img.replicas if r.provider_image_id]
        for img, rep in holders:
            try:
                self.registry.get(rep.location)
            except NotFound:
                raise Conflict(f"location {rep.location} holds a replica of {img.id} and is "
                               "not running: start it, or remove the location, first",
                               field="image") from None
        for _, rep in holders:  # every location asked before anything is removed
            self.registry.run(rep.location, methodcaller("refuse_in_use", rep.provider_image_id))
        for _, rep in holders:
            with contextlib.suppress(NotFound):  # gone already: what deletion wants
                self.registry.run(rep.location,
                                  methodcaller("delete_disk", rep.provider_image_id), timeout=600)
        ids = {img.id for img in imgs}
        with self.events.tx() as s:
            for rep_row in s.scalars(select(ImageReplicaRow).where(
                    ImageReplicaRow.image_id.in_(ids))):
                s.delete(rep_row)
            s.flush()
            for img in imgs:
                row = s.get(CatalogImageRow, img.id)
                if row is not None:
                    s.delete(row)
                where = sorted({r.location for r in img.replicas if r.provider_image_id})
                self.events.emit("image.deleted", f"image {img.name} {img.version} ({img.id}) "
                                 "deleted from the catalog" + (f" and from {', '.join(where)}"
                                                               if where else ""),
                                 subject=img.id, session=s)
            s.flush()
            kept = {d.get("sha256") for other in s.scalars(select(CatalogImageRow))
                    for d in other.disks}
        for img in imgs:
            for d in img.disks:
                if d.get("sha256") and d["sha256"] not in kept:
                    self.store.forget(d["sha256"])

    def _refuse_needed(self, img: CatalogImage) -> None:
        with self.events.store.tx() as s:
            users = sorted(d.name for d in s.scalars(select(DeploymentRow))
                           if img.id == (d.spec or {}).get("image")
                           or img.id in ((d.spec or {}).get("images") or {}).values())
            busy = s.scalars(select(JobRow.id).where(
                JobRow.kind == "image.replicate", JobRow.target == img.id,
                JobRow.status.in_(UNFINISHED))).first()
        if users:
            raise Conflict(f"image {img.id} is deployed by {', '.join(users)}: delete or change "
                           "those deployments first", field="image")
        if busy:
            raise Conflict(f"image {img.id} is being replicated ({busy}): wait for it to "
                           "finish", field="image")

    # ---- replication ---------------------------------------------------------------------

    def replicate(self, image_id: str, locations: list[str]) -> list[Job]:
        """One job per location; they run concurrently, each in its location's pool."""
        self.get(image_id)
        fmt = (self.get(image_id).disks or [{}])[0].get("format")
        for loc in locations:
            provider = self.registry.get(loc)
            provider.require(Feature.disk_images, "to")
            _runs(provider, fmt)
        jobs = []
        for loc in locations:
            job_id = new_id("job")
            with self.events.tx() as s:
                rep = s.get(ImageReplicaRow, (image_id, loc))
                if rep is None:
                    s.add(ImageReplicaRow(image_id=image_id, location=loc, state="pending"))
                elif rep.state != "ready":
                    rep.state, rep.error, rep.progress = "pending", None, 0.0
                s.add(JobRow(id=job_id, kind="image.replicate", target=image_id, location=loc,
                             params={}, status=JobStatus.queued, node=self.runner.node))
                self.events.emit("job.queued", f"replicate image {image_id} to {loc}",
                                 location=loc, subject=image_id, session=s,
                                 data={"job": job_id, "kind": "image.replicate"})
            self.runner.submit(job_id, loc, chain_key("image.replicate", image_id, loc))
            jobs.append(job_id)
        with self.events.store.tx() as s:
            return [job_view(r) for r in (s.get(JobRow, j) for j in jobs) if r is not None]

    def _set(self, image_id: str, loc: str, **values: Any) -> None:
        with self.events.store.tx() as s:
            rep = s.get(ImageReplicaRow, (image_id, loc))
            if rep is not None:
                for k, v in values.items():
                    setattr(rep, k, v)

    def _do_replicate(self, provider: Provider, job: JobRow) -> dict[str, Any]:
        image_id, loc = job.target or "", job.location or ""
        with self.events.store.tx() as s:
            rep = s.get(ImageReplicaRow, (image_id, loc))
            if rep is not None and rep.state == "ready" and rep.provider_image_id:
                return {"provider_image_id": rep.provider_image_id}
        img = self.get(image_id)
        d = img.disks[0]
        _runs(provider, d["format"])
        fmt = next((f for f in provider.disk_formats if f == d["format"]), provider.disk_formats[0])
        self._set(image_id, loc, state="converting", format=fmt)
        path = self.store.converted(d["sha256"], fmt, d["format"], d.get("subformat"))
        digest = d["sha256"] if path == self.store.path(d["sha256"]) else self.store.digest_of(path)
        self._set(image_id, loc, state="replicating")
        last = [0.0]

        def progress(pct: float) -> None:
            if pct - last[0] >= 5 or pct >= 100:  # a row update per 5 %, not per chunk
                last[0] = pct
                self._set(image_id, loc, progress=round(pct, 1))
        pid = provider.import_disk(image_id, img.name, path, fmt, digest, progress)
        self._set(image_id, loc, state="ready", progress=100.0, provider_image_id=pid, error=None)
        self.events.emit("image.replicated", f"image {img.name} ({image_id}) is ready at {loc} "
                         f"as {pid} ({fmt})", location=loc, subject=image_id)
        return {"provider_image_id": pid, "format": fmt}

    def _replicate_failed(self, job: JobRow, exc: OnepaneError) -> None:
        self._set(job.target or "", job.location or "", state="failed", error=exc.detail)


def _runs(provider: Provider, fmt: str | None) -> None:
    """A container image goes only where containers run, and a VM disk never goes there: no
    conversion turns one into the other."""
    container_host = containers.FORMAT in provider.disk_formats
    if (fmt == containers.FORMAT) != container_host:
        what = "a container image" if fmt == containers.FORMAT else "a VM disk image"
        takes = "container images" if container_host else \
            f"VM disk images ({', '.join(provider.disk_formats)})"
        raise InvalidInput(f"location {provider.location} takes {takes}; this is {what}",
                           field="to")


def _startup(desc: ovf.OvfPackage, rows: dict[str, CatalogImageRow]) -> list[dict[str, Any]]:
    """The application's start order: each member with its StartupSection line (order,
    delays, actions), in order; members the section does not name come last, order None
    (DSP0243: their order is undefined)."""
    named = {item.system: item for item in desc.startup}
    out = []
    for system, row in rows.items():
        item = named.get(system)
        out.append({"system": system, "image": row.id, "name": row.name,
                    **(asdict(item) if item else {"order": None})})
    return sorted(out, key=lambda m: (m["order"] is None, m["order"] or 0))
