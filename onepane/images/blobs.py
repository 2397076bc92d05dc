"""The catalog's disks, stored once by content (`sha256/<digest>`), and their conversions to
the formats locations take (`converted/<digest>.<format>`, made once and cached, each with its
own digest beside it so that a later replication reads it back instead of hashing again)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from ..providers.copy import sha256_of
from . import disk, inspect


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "converted").mkdir(parents=True, exist_ok=True)
        self._convert_lock = threading.Lock()

    def path(self, sha: str) -> Path:
        return self.root / "sha256" / sha

    def keep(self, src: Path, found: inspect.Inspected,
             digest: str | None = None) -> dict[str, Any]:
        """Keep an inspected disk once, by content."""
        movable = digest is not None  # an upload of ours, in a scratch folder on the same disk
        digest = digest or sha256_of(src)
        blob = self.path(digest)
        if not blob.exists():  # content-addressed: the same disk is kept once
            if movable:
                src.replace(blob)
            else:
                tmp = blob.with_name(digest + ".partial")
                shutil.copyfile(src, tmp)
                tmp.replace(blob)
        return {"sha256": digest, "format": found.format, "virtual_size": found.virtual_size,
                "size": blob.stat().st_size, "subformat": found.subformat}

    def converted(self, sha: str, fmt: str, src_format: str, subformat: str | None = None) -> Path:
        """The disk in `fmt`, converted once and cached (the blob itself when it already is).
        A VMDK counts as VMDK only when streamOptimized, the one subformat OVF consumers take;
        any other is converted, not relabelled."""
        if fmt == src_format and (fmt != "vmdk" or subformat == "streamOptimized"):
            return self.path(sha)
        out = self.root / "converted" / f"{sha}.{fmt}"
        with self._convert_lock:
            if not out.exists():
                disk.convert(self.path(sha), out, fmt, src_format)
        return out

    def forget(self, sha: str) -> None:
        """A disk no image has any more: the blob and its conversions."""
        self.path(sha).unlink(missing_ok=True)
        for converted in (self.root / "converted").glob(f"{sha}.*"):
            converted.unlink(missing_ok=True)

    @staticmethod
    def digest_of(converted: Path) -> str:
        """A converted disk is hashed once; later replications of it read the digest back."""
        side = converted.with_name(converted.name + ".sha256")
        if side.exists():
            return side.read_text().strip()
        digest = sha256_of(converted)
        side.write_text(digest)
        return digest
