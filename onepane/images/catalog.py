"""The image catalog: logical images, their disks stored once by content, and where they are.

A logical image (name, version, OS, CPUs, memory, disks) is imported once, from an OVA or a
plain disk in any format qemu-img reads. Its disks live in `blobs/sha256/<digest>`, so the
same disk imported twice is stored once. Replicating it to a location converts each disk to
the first format that location takes (once per format, cached beside the blob), copies it
there as a job of that location, checks the digest at the other end, and registers it.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from ..errors import InvalidInput, NotFound, OnepaneError, Unsupported
from ..events import EventLog
from ..inventory.jobs import JobRunner
from ..inventory.views import job_view
from ..model import Job, JobStatus, new_id
from ..providers.base import Provider
from ..providers.copy import sha256_of
from ..providers.registry import Registry
from ..store.tables import CatalogImageRow, ImageReplicaRow, JobRow
from . import disk, ova, ovf


class Replica(BaseModel):
    location: str
    state: str
    format: str | None
    progress: float
    provider_image_id: str | None
    error: str | None


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


class Catalog:
    def __init__(self, events: EventLog, registry: Registry, runner: JobRunner,
                 state_dir: Path) -> None:
        self.events = events
        self.registry = registry
        self.runner = runner
        self.blobs = state_dir / "blobs"
        (self.blobs / "sha256").mkdir(parents=True, exist_ok=True)
        (self.blobs / "converted").mkdir(parents=True, exist_ok=True)
        self._convert_lock = threading.Lock()
        runner.register("image.replicate", self._do_replicate, self._replicate_failed)

    # ---- import --------------------------------------------------------------------------

    def import_file(self, path: Path, name: str, version: str = "1",
                    digest: str | None = None) -> CatalogImage:
        """An OVA (tar, descriptor first) or a plain disk image, told apart by content. `digest`
        is the file's SHA-256 if the caller computed it on the way in; a plain disk is then moved
        into the store rather than read twice more (hash, copy)."""
        with tempfile.TemporaryDirectory(dir=self.blobs, prefix=".import-") as tmp:
            if tarfile.is_tarfile(path):
                pkg = ova.read_ova(path, Path(tmp) / "ova")
                vs = pkg.descriptor.systems[0]
                disks = []
                for disk_id in vs.disks or [d.id for d in pkg.descriptor.disks]:
                    d = next((x for x in pkg.descriptor.disks if x.id == disk_id), None)
                    ref = pkg.descriptor.file(d.file_ref) if d else None
                    if d is None or ref is None:
                        continue
                    disks.append(self._store_blob(pkg.directory / ref.href, d.capacity_bytes))
                row = CatalogImageRow(
                    id=new_id("img"), name=name or vs.name, version=version,
                    os=vs.os_description, cpus=vs.cpus,
                    memory_mb=max(1, vs.memory_bytes // 2**20) if vs.memory_bytes else 512,
                    disks=disks, networks=vs.nics, product=vs.product, source="ova")
            else:
                row = CatalogImageRow(id=new_id("img"), name=name or path.stem, version=version,
                                      os=None, cpus=1, memory_mb=512,
                                      disks=[self._store_blob(path, None, digest)], networks=[],
                                      product={}, source="disk")
        if not row.disks:
            raise InvalidInput("the package has no disk", field="file")
        with self.events.tx() as s:
            s.add(row)
            self.events.emit("image.imported", f"image {row.name} {row.version} ({row.id}) "
                             f"imported from {row.source}", subject=row.id, session=s)
        return self.get(row.id)

    def _store_blob(self, src: Path, claimed: int | None, digest: str | None = None) -> dict[str, Any]:
        info = disk.info(src)
        if claimed is not None and info.virtual_size > claimed:
            raise InvalidInput(f"{src.name} holds {info.virtual_size} bytes, more than the "
                               f"{claimed} it claims", field="file")
        movable = digest is not None  # an upload of ours, in a scratch folder on the same disk
        digest = digest or sha256_of(src)
        blob = self.blobs / "sha256" / digest
        if not blob.exists():  # content-addressed: the same disk is kept once
            if movable:
                src.replace(blob)
            else:
                tmp = blob.with_name(digest + ".partial")
                shutil.copyfile(src, tmp)
                tmp.replace(blob)
        return {"sha256": digest, "format": info.format, "virtual_size": info.virtual_size,
                "size": blob.stat().st_size}

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
            return CatalogImage(
                id=row.id, name=row.name, version=row.version, os=row.os, cpus=row.cpus,
                memory_mb=row.memory_mb, disks=list(row.disks), networks=list(row.networks),
                product=row.product, source=row.source,
                replicas=[Replica(location=r.location, state=r.state, format=r.format,
                                  progress=r.progress, provider_image_id=r.provider_image_id,
                                  error=r.error) for r in reps])

    def blob(self, sha: str) -> Path:
        return self.blobs / "sha256" / sha

    def converted(self, sha: str, fmt: str, src_format: str) -> Path:
        """The disk in `fmt`, converted once and cached (the blob itself when it already is)."""
        if fmt == src_format:
            return self.blob(sha)
        out = self.blobs / "converted" / f"{sha}.{fmt}"
        with self._convert_lock:
            if not out.exists():
                disk.convert(self.blob(sha), out, fmt, src_format=src_format)
        return out

    @staticmethod
    def _digest_of(converted: Path) -> str:
        """A converted disk is hashed once; later replications of it read the digest back."""
        side = converted.with_name(converted.name + ".sha256")
        if side.exists():
            return side.read_text().strip()
        digest = sha256_of(converted)
        side.write_text(digest)
        return digest

    # ---- export --------------------------------------------------------------------------

    def export(self, image_id: str, out: Path, fmt: str = "ova", ovf_version: str = "1.0") -> Path:
        img = self.get(image_id)
        first = img.disks[0]
        if fmt != "ova":
            return Path(shutil.copyfile(self.converted(first["sha256"], fmt, first["format"]), out))
        files, disks = {}, []
        for i, d in enumerate(img.disks, start=1):
            path = self.converted(d["sha256"], "vmdk", d["format"])
            href = f"disk{i}.vmdk"
            files[href] = path
            disks.append(ovf.OvfDisk(id=f"vmdisk{i}", file_ref=f"file{i}",
                                     capacity_bytes=d["virtual_size"], format=ovf.VMDK_STREAM))
        pkg = ovf.OvfPackage(
            version=ovf_version,
            files=[ovf.OvfFile(id=f"file{i}", href=h, size=p.stat().st_size)
                   for i, (h, p) in enumerate(files.items(), start=1)],
            disks=disks, networks=sorted(set(img.networks)),
            systems=[ovf.VirtualSystem(id=img.name, name=img.name, cpus=img.cpus,
                                       memory_bytes=img.memory_mb * 2**20, nics=img.networks,
                                       disks=[d.id for d in disks], os_description=img.os,
                                       product=img.product)])
        ova.write_ova(pkg, files, out, ovf_version, img.name)
        return out

    # ---- replication ---------------------------------------------------------------------

    def replicate(self, image_id: str, locations: list[str]) -> list[Job]:
        """One job per location; they run concurrently, each in its location's pool."""
        self.get(image_id)
        for loc in locations:
            provider = self.registry.get(loc)
            if not provider.capabilities.disk_images:
                raise Unsupported(f"location {loc} cannot take disk images", field="to")
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
                             params={}, status=JobStatus.queued))
                self.events.emit("job.queued", f"replicate image {image_id} to {loc}",
                                 location=loc, subject=image_id, session=s,
                                 data={"job": job_id, "kind": "image.replicate"})
            self.runner.submit(job_id, loc)
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
        fmt = next((f for f in provider.disk_formats if f == d["format"]), provider.disk_formats[0])
        self._set(image_id, loc, state="converting", format=fmt)
        path = self.converted(d["sha256"], fmt, d["format"])
        digest = d["sha256"] if path == self.blob(d["sha256"]) else self._digest_of(path)
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
