"""OVA archives and OVF folders: checked whole before anything is kept.

An OVA is a tar with the descriptor first; the folder form (what ovftool writes next to a
descriptor) is packed into one by the CLI, and a gzip-compressed OVA is unwrapped first. Reading
checks member names (no absolute paths, no '..', no links, no devices), the total size against
a limit, the manifest's digests, that every referenced file is there (reassembling
`ovf:chunkSize` parts and gunzipping `ovf:compression="gzip"` files), declared sizes, and every
disk with `inspect.check`: no disk may reach outside the package, nor be larger than its
descriptor claims.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import logging
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InvalidInput
from . import inspect, ovf, ovf_writer

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 64 * 2**30
_MF_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\s*\(([^)]+)\)\s*=\s*([0-9a-fA-F]+)\s*$")
_GZIP_MAGIC = b"\x1f\x8b"
_FORMAT_HINTS = {"vmdk": "vmdk", "qcow": "qcow2", "vhdx": "vhdx", "vhd": "vpc", "vdi": "vdi"}


@dataclass
class Package:
    descriptor: ovf.OvfPackage
    directory: Path  # where the descriptor and its files are
    descriptor_name: str
    warnings: list[str]
    disks: dict[str, inspect.Inspected] = field(default_factory=dict)  # by OVF disk id


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def gunzip(src: Path, dst: Path, limit: int, what: str) -> None:
    """Decompress with a bound on the output: a small upload must not fill the disk."""
    written = 0
    try:
        with gzip.open(src, "rb") as fin, dst.open("wb") as fout:
            while block := fin.read(1024 * 1024):
                written += len(block)
                if written > limit:
                    raise InvalidInput(f"{what}: decompresses to more than {limit} bytes",
                                       field="ova")
                fout.write(block)
    except (OSError, EOFError, zlib.error) as exc:
        dst.unlink(missing_ok=True)
        raise InvalidInput(f"{what}: not valid gzip data ({exc})", field="ova") from exc


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


def read_ova(archive: Path, dest: Path, limit: int = DEFAULT_LIMIT,
             source: str | None = None) -> Package:
    """Unpack and verify into `dest` (created); on any error `dest` is removed again."""
    source = source or archive.name
    if archive.stat().st_size > limit:
        raise InvalidInput(f"{source}: {archive.stat().st_size} bytes is over the "
                           f"{limit}-byte limit", field="ova")
    dest.mkdir(parents=True)
    # Beside `dest`, not in it: a member of the same name must not overwrite the tar being read.
    unwrapped = dest.with_name(dest.name + ".unwrapped.tar")
    try:
        if is_gzip(archive):  # a gzip-compressed OVA (.ova.gz, or renamed)
            gunzip(archive, unwrapped, limit, source)
            archive = unwrapped
        if not tarfile.is_tarfile(archive):
            raise InvalidInput(f"{source}: not a tar archive", field="ova")
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
            names = [m.name for m in members]
            if len(set(names)) != len(names):
                raise InvalidInput(f"{source}: two members share one name", field="ova")
            for m in members:
                with tar.extractfile(m) as src, (dest / m.name).open("wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 1024 * 1024)
        unwrapped.unlink(missing_ok=True)
        return verify_directory(dest, members[0].name, source, limit)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        unwrapped.unlink(missing_ok=True)


def verify_directory(directory: Path, descriptor_name: str, source: str,
                     limit: int = DEFAULT_LIMIT) -> Package:
    """Check an OVF's files against its manifest and descriptor, and inspect every disk."""
    pkg = ovf.parse((directory / descriptor_name).read_bytes(), descriptor_name)
    warnings: list[str] = []
    stem = descriptor_name.rsplit(".", 1)[0]
    if (directory / f"{stem}.cert").exists():
        warnings.append("certificate present but not verified (ignored)")
    mf = directory / f"{stem}.mf"
    verified = _check_manifest(mf, directory, source) if mf.exists() else set()
    for f in pkg.files:
        _assemble(f, directory, source, verified, warnings, limit)
    result = Package(pkg, directory, descriptor_name, warnings)
    disk_files = {d.file_ref for d in pkg.disks}
    for f in pkg.files:
        if f.id not in disk_files:
            warnings.append(f"file {f.href} is not a disk and is not imported")
    for d in pkg.disks:
        ref = pkg.file(d.file_ref)
        if ref is None:
            continue
        found = inspect.check(directory / ref.href, f"{source}: {ref.href}", field="ova")
        hint = next((v for k, v in _FORMAT_HINTS.items() if k in (d.format or "").lower()), None)
        if hint in ("vmdk", "qcow2") and found.format != hint:
            raise InvalidInput(f"{source}: disk {d.id} ({ref.href}) is declared {d.format} "
                               f"but its content is {found.format}", field="ova")
        if d.capacity_bytes and found.virtual_size > d.capacity_bytes:
            raise InvalidInput(f"{source}: disk {d.id} ({ref.href}) holds {found.virtual_size} "
                               f"bytes, more than the {d.capacity_bytes} it claims", field="ova")
        result.disks[d.id] = found
    for w in warnings:
        log.warning("%s: %s", source, w)
    return result


def _assemble(f: ovf.OvfFile, directory: Path, source: str, verified: set[str],
              warnings: list[str], limit: int) -> None:
    """Make `f.href` the file the descriptor means: joined from its chunks, gunzipped."""
    path = directory / f.href
    packaged = [path]
    if f.chunk_size:
        parts = chunks(directory, f.href)
        if not parts:
            raise InvalidInput(f"{source}: referenced file {f.href!r} (split in "
                               f"{f.chunk_size}-byte chunks) has no {f.href}.000000000",
                               field="ova")
        expected = [f"{f.href}.{i:09d}" for i in range(len(parts))]
        if [p.name for p in parts] != expected:
            raise InvalidInput(f"{source}: chunks of {f.href} are not numbered 0..{len(parts) - 1}",
                               field="ova")
        with path.open("wb") as out:
            for p in parts:
                with p.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1024 * 1024)
        packaged = parts
    if not path.is_file():
        raise InvalidInput(f"{source}: referenced file {f.href!r} is missing", field="ova")
    real = sum(p.stat().st_size for p in packaged)
    if f.size is not None and f.size != real:
        what = f"{f.href} is {real} bytes, the descriptor says {f.size}"
        if all(p.name in verified for p in packaged):
            warnings.append(f"{what}; imported because the manifest's digest verifies the file")
        else:
            raise InvalidInput(f"{source}: {what} (and no manifest digest verifies it)",
                               field="ova")
    for p in packaged:
        if p != path:
            p.unlink()
    if f.compression == "gzip":
        packed = path.with_name(path.name + ".gz")
        path.replace(packed)
        gunzip(packed, path, limit, f"{source}: {f.href}")
        packed.unlink()


def chunks(directory: Path, href: str) -> list[Path]:
    """The parts ovftool's `ovf:chunkSize` splits a file into: `href.000000000`, ... in order."""
    return sorted(p for p in directory.glob(f"{glob.escape(href)}.*")
                  if re.fullmatch(r"\d{9}", p.name[len(href) + 1:]))


def _check_manifest(mf: Path, directory: Path, source: str) -> set[str]:
    """The names whose digests the manifest verified."""
    verified = set()
    for n, line in enumerate(mf.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        m = _MF_LINE.match(line)
        if not m:
            raise InvalidInput(f"{source}: {mf.name} line {n} is not 'ALGO(file)= digest'",
                               field="ova")
        algo, name, digest = m.group(1).lower(), m.group(2).strip(), m.group(3).lower()
        path = directory / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise InvalidInput(f"{source}: {mf.name} names {name!r}, which is not in the package",
                               field="ova")
        if _digest(path, algo) != digest:
            raise InvalidInput(f"{source}: {name} does not match its {algo.upper()} in "
                               f"{mf.name}", field="ova")
        verified.add(name)
    return verified


def write_ova(pkg: ovf.OvfPackage, files: dict[str, Path], out: Path, version: str = "1.0",
              name: str = "package") -> None:
    """Descriptor, manifest, then the files: the order DSP0243 gives. The manifest's digest is
    the one the version defines: SHA-1 for OVF 1.x, SHA-256 for 2.0."""
    descriptor = ovf_writer.write(pkg, version)
    algo = "sha256" if version.startswith("2") else "sha1"
    digests = {f"{name}.ovf": hashlib.new(algo, descriptor).hexdigest()}
    for href, path in files.items():
        digests[href] = _digest(path, algo)
    manifest = "".join(f"{algo.upper()}({k})= {v}\n" for k, v in digests.items()).encode()
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add_bytes(tar, f"{name}.ovf", descriptor)
        _add_bytes(tar, f"{name}.mf", manifest)
        for href, path in files.items():
            tar.add(path, arcname=href, recursive=False)
    tmp.replace(out)


def pack_folder(descriptor: Path, out: Path) -> None:
    """An OVF folder (descriptor, manifest, certificate and the files it references, side by
    side, as ovftool writes them) as one OVA, descriptor first. Only plain names the descriptor
    or manifest lists are taken; nothing else in the folder is read."""
    pkg = ovf.parse(descriptor.read_bytes(), descriptor.name)
    folder, stem = descriptor.parent, descriptor.stem
    names: list[str] = []
    for extra in (f"{stem}.mf", f"{stem}.cert"):
        if (folder / extra).is_file():
            names.append(extra)
    for f in pkg.files:
        if f.chunk_size:
            names += [p.name for p in chunks(folder, f.href)]
        elif (folder / f.href).is_file():
            names.append(f.href)
        else:
            raise InvalidInput(f"{descriptor.name}: referenced file {f.href!r} is not in "
                               f"{folder}", field="file")
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(descriptor, arcname=descriptor.name, recursive=False)
        for n in names:
            tar.add(folder / n, arcname=n, recursive=False)


def looks_like_descriptor(head: bytes) -> bool:
    """An OVF descriptor, sent where a disk or an OVA was expected."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"<?xml") or (text.startswith(b"<") and b"Envelope" in text[:4096])


def _digest(path: Path, algo: str) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))

