"""Container image archives (`docker save` output, OCI image layouts in a tar), checked as the
untrusted input they are before anything stores or loads them.

An archive is a tar of JSON documents and layer tarballs. What is checked, without extracting
anything to disk: every path in the archive and in every layer stays inside (no absolute
paths, no `..`, no links out, no device files), the sizes and counts stay under limits, the
manifest names only members that exist, every blob named by a digest has that digest, and each
layer's uncompressed content has the digest the image's configuration lists for it (a manifest
that matches its blobs). An OCI layout with no `manifest.json` (Docker 25+ writes both) is
given one in a copy (`with_docker_manifest`), so that any Docker engine's image load takes it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInput
from ..providers.base import CONTAINER_FORMAT

FORMAT = CONTAINER_FORMAT  # what the catalog records: loadable by any engine's image load
MAX_ARCHIVE_BYTES = 32 << 30
MAX_MEMBERS = 100_000  # members of the archive, and of each layer
MAX_LAYERS = 127  # Docker's own limit
MAX_JSON_BYTES = 4 << 20
HEX64 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20


@dataclass
class ContainerImage:
    """What onepane keeps of a checked archive: enough to show it and to run it."""

    tags: list[str]
    config_digest: str
    layers: int
    size: int  # uncompressed bytes of its layers
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # exposed, e.g. "80/tcp"
    env: list[str] = field(default_factory=list)
    # Docker's manifest.json for an OCI layout that has none (to add before loading it)
    docker_manifest: list[dict[str, Any]] | None = None

    def as_meta(self) -> dict[str, Any]:
        return {"tags": self.tags, "config_digest": self.config_digest, "layers": self.layers,
                "size": self.size, "cmd": self.cmd, "entrypoint": self.entrypoint,
                "ports": self.ports, "env": self.env}


def looks_like_container_archive(path: Path) -> bool:
    """A tar whose first members include manifest.json or oci-layout (and no OVF descriptor).
    Cheap: reads member headers until it knows."""
    try:
        with tarfile.open(path, "r:") as tar:
            for i, member in enumerate(tar):
                name = member.name.lstrip("./")
                if name.endswith(".ovf"):
                    return False
                if name in ("manifest.json", "oci-layout", "index.json"):
                    return True
                if i > 2000:
                    return False
    except (tarfile.TarError, OSError):
        return False
    return False


def check_archive(path: Path, label: str, field_name: str = "file",
                  max_bytes: int = MAX_ARCHIVE_BYTES) -> ContainerImage:
    """Check the archive at `path`; an InvalidInput naming what is wrong otherwise. An OCI
    layout without manifest.json gets one written into the file."""
    if path.stat().st_size > max_bytes:
        raise InvalidInput(f"{label}: {path.stat().st_size} bytes is over the limit of "
                           f"{max_bytes} for a container image archive", field=field_name)
    try:
        with tarfile.open(path, "r:") as tar:
            return Archive(tar, _members(tar, label, field_name), label, field_name).check()
    except tarfile.TarError as exc:
        raise InvalidInput(f"{label}: not a readable tar archive ({exc})",
                           field=field_name) from None


def _members(tar: tarfile.TarFile, label: str, field_name: str) -> dict[str, tarfile.TarInfo]:
    out: dict[str, tarfile.TarInfo] = {}
    for i, m in enumerate(tar):
        if i >= MAX_MEMBERS:
            raise InvalidInput(f"{label}: more than {MAX_MEMBERS} members", field=field_name)
        name = _safe_path(m, label, field_name, "the archive")
        if name:
            out[name] = m
    return out


def _safe_path(m: tarfile.TarInfo, label: str, field_name: str, where: str) -> str:
    """The member's normalised name; refused when it, or its link, leaves the archive."""
    name = m.name
    if "\0" in name or name.startswith("/") or ".." in name.split("/"):
        raise InvalidInput(f"{label}: {where} has a path that leaves it: {name!r}",
                           field=field_name)
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        raise InvalidInput(f"{label}: {where} has a device or special file: {name!r}",
                           field=field_name)
    if m.issym() or m.islnk():
        target = m.linkname
        base = posixpath.dirname(name) if m.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") and m.issym() and where != "the archive":
            return posixpath.normpath(name)  # an absolute link inside a layer: the container's
        if target.startswith("/") or resolved.startswith(".."):
            raise InvalidInput(f"{label}: {where} has a link that leaves it: {name!r} -> "
                               f"{target!r}", field=field_name)
    return posixpath.normpath(name).lstrip("./") if name not in (".", "./") else ""


class Archive:
    """The documents of one archive and the checks across them."""

    def __init__(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], label: str,
                 field_name: str) -> None:
        self.tar, self.members, self.label, self.field = tar, members, label, field_name
        self.docker_manifest: list[dict[str, Any]] = []

    def bad(self, what: str) -> InvalidInput:
        return InvalidInput(f"{self.label}: {what}", field=self.field)

    def check(self) -> ContainerImage:
        if "manifest.json" in self.members:
            manifest = self.json("manifest.json")
            if not isinstance(manifest, list) or len(manifest) != 1 or \
                    not isinstance(manifest[0], dict):
                raise self.bad("manifest.json must list exactly one image (an archive of "
                               "several: save them one by one)")
            entry = manifest[0]
            config_name, layers = entry.get("Config"), entry.get("Layers")
            tags = entry.get("RepoTags") or []
            added = False
        elif "index.json" in self.members and "oci-layout" in self.members:
            config_name, layers, tags = self.oci_entry()
            added = True
        else:
            raise self.bad("no manifest.json (docker save) nor index.json and oci-layout "
                           "(an OCI image layout): not a container image archive")
        if not (isinstance(config_name, str) and isinstance(layers, list)
                and all(isinstance(x, str) for x in layers)):
            raise self.bad("the manifest's Config and Layers must be a path and a list of paths")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise self.bad("RepoTags must be a list of names")
        if not 1 <= len(layers) <= MAX_LAYERS:
            raise self.bad(f"an image has 1 to {MAX_LAYERS} layers, not {len(layers)}")
        config_raw = self.read(config_name, MAX_JSON_BYTES)
        config_digest = hashlib.sha256(config_raw).hexdigest()
        self.named_digest(config_name, config_digest)
        config = self.parse(config_name, config_raw)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(layers):
            raise self.bad(f"the configuration lists {len(diff_ids)} layer digests for "
                           f"{len(layers)} layers")
        size = 0
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            size += self.layer(layer, str(diff_id))
        self.docker_manifest = [{"Config": config_name, "RepoTags": tags, "Layers": layers}]
        run = config.get("config") or {}
        return ContainerImage(
            tags=tags, config_digest=f"sha256:{config_digest}", layers=len(layers), size=size,
            cmd=_strings(run.get("Cmd")), entrypoint=_strings(run.get("Entrypoint")),
            ports=sorted(str(p) for p in (run.get("ExposedPorts") or {})),
            env=_strings(run.get("Env")),
            docker_manifest=self.docker_manifest if added else None)

    def oci_entry(self) -> tuple[Any, Any, list[str]]:
        index = self.json("index.json")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list) or len(manifests) != 1:
            raise self.bad("index.json must name exactly one image manifest")
        ref = manifests[0]
        manifest = self.parse("the image manifest", self.blob(ref.get("digest"),
                                                                 MAX_JSON_BYTES))
        config = (manifest.get("config") or {}).get("digest")
        layers = [x.get("digest") for x in manifest.get("layers") or [] if isinstance(x, dict)]
        name = ((ref.get("annotations") or {}).get("io.containerd.image.name")
                or (ref.get("annotations") or {}).get("org.opencontainers.image.ref.name"))
        tags = [name] if isinstance(name, str) and ":" in name else []
        return self.blob_path(config), [self.blob_path(x) for x in layers], tags

    def blob_path(self, digest: Any) -> str:
        if not isinstance(digest, str) or not digest.startswith("sha256:") or \
                not HEX64.fullmatch(digest[7:]):
            raise self.bad(f"not a sha256 digest: {str(digest)[:80]!r}")
        return f"blobs/sha256/{digest[7:]}"

    def blob(self, digest: Any, limit: int) -> bytes:
        path = self.blob_path(digest)
        data = self.read(path, limit)
        self.named_digest(path, hashlib.sha256(data).hexdigest())
        return data

    def named_digest(self, name: str, actual: str) -> None:
        """A member named by its digest (`<hex>.json`, `blobs/sha256/<hex>`) must have it."""
        stem = posixpath.basename(name).removesuffix(".json")
        if HEX64.fullmatch(stem) and stem != actual:
            raise self.bad(f"{name} does not have the digest its name says (sha256 {actual})")

    def member(self, name: str) -> tarfile.TarInfo:
        m = self.members.get(posixpath.normpath(name).lstrip("./"))
        seen = 0
        while m is not None and (m.issym() or m.islnk()) and seen < 8:
            target = m.linkname if m.islnk() else \
                posixpath.join(posixpath.dirname(m.name), m.linkname)
            m = self.members.get(posixpath.normpath(target).lstrip("./"))
            seen += 1
        if m is None or not m.isfile():
            raise self.bad(f"the manifest names {name!r}, which the archive does not hold")
        return m

    def read(self, name: str, limit: int) -> bytes:
        m = self.member(name)
        if m.size > limit:
            raise self.bad(f"{name} is {m.size} bytes, over the limit of {limit}")
        f = self.tar.extractfile(m)
        assert f is not None
        return f.read()

    def json(self, name: str) -> Any:
        return self.parse(name, self.read(name, MAX_JSON_BYTES))

    def parse(self, name: str, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise self.bad(f"{name} is not JSON ({exc})") from None

    def layer(self, name: str, diff_id: str) -> int:
        """Walk one layer: every path stays inside, and its uncompressed content has the
        digest the configuration gives it. Returns its uncompressed size."""
        m = self.member(name)
        if HEX64.fullmatch(posixpath.basename(name)):  # an OCI blob: named by its digest
            self.named_digest(name, _sha256(self.tar.extractfile(m)))
        raw = self.tar.extractfile(m)
        assert raw is not None
        head = raw.read(2)
        stream: Any = _Prefixed(head, raw)
        if head == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=stream)
        hashed = _Hashing(stream)
        where = f"layer {name}"
        try:
            with tarfile.open(fileobj=hashed, mode="r|") as inner:  # type: ignore[call-overload]
                for i, im in enumerate(inner):
                    if i >= MAX_MEMBERS:
                        raise self.bad(f"{where} has more than {MAX_MEMBERS} files")
                    _safe_path(im, self.label, self.field, where)
            hashed.drain()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise self.bad(f"{where} is not a readable tar ({exc})") from None
        if diff_id != f"sha256:{hashed.sha.hexdigest()}":
            raise self.bad(f"{where} does not match its digest in the configuration "
                           f"({diff_id[:19]}…)")
        return hashed.size


class _Prefixed(io.RawIOBase):
    """A stream with its first bytes (already read to sniff gzip) put back."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[:len(data)] = data
        return len(data)


class _Hashing:
    """Counts and hashes what tarfile reads (and what is left after its last member)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.sha, self.size = stream, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _sha256(f: IO[bytes] | None) -> str:
    sha = hashlib.sha256()
    while f is not None and (chunk := f.read(CHUNK)):
        sha.update(chunk)
    return sha.hexdigest()


def _strings(value: Any) -> list[str]:
    return [str(x) for x in value] if isinstance(value, list) else []


def with_docker_manifest(src: Path, dest: Path, manifest: list[dict[str, Any]]) -> None:
    """A copy of an OCI layout with Docker's manifest.json added (engines before Docker 25
    load only archives that have one; it names the same blobs)."""
    data = json.dumps(manifest).encode()
    shutil.copyfile(src, dest)
    with tarfile.open(dest, "a") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
