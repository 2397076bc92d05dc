"""OVA archives: a tar with the descriptor first, its files, a manifest, maybe a certificate.

Reading checks everything before anything is kept: member names (no absolute paths, no '..',
no links, no devices), the total size against a limit, the manifest's SHA1/SHA256 digests,
that every referenced file is there, and that no disk is larger than its descriptor claims.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InvalidInput
from ..providers.copy import sha256_of
from . import disk, ovf

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 64 * 2**30
_MF_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\s*\(([^)]+)\)\s*=\s*([0-9a-fA-F]+)\s*$")


@dataclass
class Package:
    descriptor: ovf.OvfPackage
    directory: Path  # where the descriptor and its files are
    descriptor_name: str
    warnings: list[str]


def _check_member(m: tarfile.TarInfo, source: str) -> None:
    path = PurePosixPath(m.name)
    if path.is_absolute() or ".." in path.parts or m.name.startswith("/"):
        raise InvalidInput(f"{source}: member {m.name!r} escapes the package", field="ova")
    if m.issym() or m.islnk():
        raise InvalidInput(f"{source}: member {m.name!r} is a link; OVAs hold plain files",
                           field="ova")
    if not m.isfile():
        raise InvalidInput(f"{source}: member {m.name!r} is not a regular file", field="ova")
    if len(path.parts) != 1:
        raise InvalidInput(f"{source}: member {m.name!r} is in a folder; OVA members are flat",
                           field="ova")


def read_ova(archive: Path, dest: Path, limit: int = DEFAULT_LIMIT) -> Package:
    """Unpack and verify into `dest` (created); on any error `dest` is removed again."""
    source = archive.name
    if archive.stat().st_size > limit:
        raise InvalidInput(f"{source}: {archive.stat().st_size} bytes is over the "
                           f"{limit}-byte limit", field="ova")
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            if not members or not members[0].name.endswith(".ovf"):
                raise InvalidInput(f"{source}: the descriptor (.ovf) must come first",
                                   field="ova")
            total = 0
            for m in members:
                _check_member(m, source)
                total += m.size
                if total > limit:
                    raise InvalidInput(f"{source}: unpacks to more than {limit} bytes",
                                       field="ova")
            for m in members:
                with tar.extractfile(m) as src, (dest / m.name).open("wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 1024 * 1024)
        return verify_directory(dest, members[0].name, source)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def verify_directory(directory: Path, descriptor_name: str, source: str) -> Package:
    """Check an OVF's files (from an OVA or a folder) against its manifest and descriptor."""
    pkg = ovf.parse((directory / descriptor_name).read_bytes(), descriptor_name)
    warnings = []
    stem = descriptor_name.rsplit(".", 1)[0]
    if (directory / f"{stem}.cert").exists():
        warnings.append("certificate present but not verified (ignored)")
        log.warning("%s: %s", source, warnings[-1])
    mf = directory / f"{stem}.mf"
    if mf.exists():
        _check_manifest(mf, directory, source)
    for f in pkg.files:
        path = directory / f.href
        if not path.is_file():
            raise InvalidInput(f"{source}: referenced file {f.href!r} is missing", field="ova")
        if f.size is not None and path.stat().st_size != f.size:
            raise InvalidInput(f"{source}: {f.href} is {path.stat().st_size} bytes, the "
                               f"descriptor says {f.size}", field="ova")
    for d in pkg.disks:
        ref = pkg.file(d.file_ref)
        if ref is None:
            continue
        info = disk.info(directory / ref.href)
        if info.virtual_size > d.capacity_bytes:
            raise InvalidInput(f"{source}: disk {d.id} ({ref.href}) holds {info.virtual_size} "
                               f"bytes, more than the {d.capacity_bytes} it claims", field="ova")
    return Package(pkg, directory, descriptor_name, warnings)


def _check_manifest(mf: Path, directory: Path, source: str) -> None:
    for n, line in enumerate(mf.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        m = _MF_LINE.match(line)
        if not m:
            raise InvalidInput(f"{source}: {mf.name} line {n} is not 'ALGO(file)= digest'",
                               field="ova")
        algo, name, digest = m.group(1).lower(), m.group(2), m.group(3).lower()
        path = directory / name
        if "/" in name or not path.is_file():
            raise InvalidInput(f"{source}: {mf.name} names {name!r}, which is not in the package",
                               field="ova")
        h = hashlib.new(algo)
        with path.open("rb") as f:
            while block := f.read(1024 * 1024):
                h.update(block)
        if h.hexdigest() != digest:
            raise InvalidInput(f"{source}: {name} does not match its {algo.upper()} in "
                               f"{mf.name}", field="ova")


def write_ova(pkg: ovf.OvfPackage, files: dict[str, Path], out: Path, version: str = "1.0",
              name: str = "package") -> None:
    """Descriptor first, then the files, then a SHA256 manifest: the order readers expect."""
    descriptor = ovf.write(pkg, version)
    digests = {f"{name}.ovf": hashlib.sha256(descriptor).hexdigest()}
    for href, path in files.items():
        digests[href] = sha256_of(path)
    manifest = "".join(f"SHA256({k})= {v}\n" for k, v in digests.items()).encode()
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add_bytes(tar, f"{name}.ovf", descriptor)
        for href, path in files.items():
            tar.add(path, arcname=href, recursive=False)
        _add_bytes(tar, f"{name}.mf", manifest)
    tmp.replace(out)


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
