"""Streaming copies with bounded memory, resumable, and digests computed on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

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
