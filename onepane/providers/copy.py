"""Streaming copies with bounded memory, resumable, and digests computed on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ..errors import NotFound, TransientProviderError
from .base import ObservedImage

CHUNK = 1024 * 1024  # small: three replications at once stay within the memory target


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def resumable_copy(src: Path, dst: Path, progress: Callable[[float], None]) -> None:
    """Copy through `dst.partial`, continuing from what an interrupted copy already wrote."""
    partial = dst.with_name(dst.name + ".partial")
    total = src.stat().st_size
    done = partial.stat().st_size if partial.exists() else 0
    if done > total:
        partial.unlink()
        done = 0
    with src.open("rb") as fin, partial.open("ab") as fout:
        fin.seek(done)
        while block := fin.read(CHUNK):
            fout.write(block)
            done += len(block)
            progress(100.0 * done / total if total else 100.0)
    partial.replace(dst)


def into_store(store: Path, image_id: str, src: Path, fmt: str, sha256: str,
               progress: Callable[[float], None]) -> str:
    """A catalog disk into a data center's image store: copied (resuming an interrupted copy),
    verified against the catalog's digest, skipped when already there. Returns the file name,
    the image's id at that location."""
    store.mkdir(parents=True, exist_ok=True)
    final = store / f"{image_id}.{fmt}"
    if final.exists() and sha256_of(final) == sha256:
        return final.name
    resumable_copy(src, final, progress)
    if sha256_of(final) != sha256:
        final.unlink()
        raise TransientProviderError(f"{final.name}: checksum mismatch after the copy")
    return final.name


def remove_from_store(store: Path, name: str) -> None:
    """A disk into_store put there, removed (NotFound when there is none of that name)."""
    path = store / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound(f"no image {name!r} in {store.name}", field="image")
    path.unlink()


def stored_disks(store: Path, formats: tuple[str, ...], bootable: bool) -> list[ObservedImage]:
    """The disks in a data center's image store (what into_store put there), by file name."""
    if not store.is_dir():
        return []
    return [ObservedImage(provider_id=p.name, name=p.stem,
                          extra={"kind": "disk", "format": p.suffix[1:], "bootable": bootable})
            for p in sorted(store.iterdir())
            if p.suffix[1:] in formats and not p.name.startswith(".")]
