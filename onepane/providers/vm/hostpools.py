"""Each host's storage pool, and the network storage's: the images and disks onepane keeps on
hosts it reaches only over libvirt (never a file it shares), moved with libvirt's streams. A
host that lacks an image gets it from one that has it, relayed through onepane: hosts need not
reach each other's storage."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import InvalidInput, OnepaneError
from .provider import _libvirt, libvirt_errors

POOL = "onepane"  # the storage pool every host (and the storage) keeps onepane's volumes in
STORAGE = "@storage"  # the network storage's connection name, beside the hosts'


class HostPools:
    def __init__(self, location: str, root: Path, options: Callable[[], Any],
                 conn: Callable[[str], Any], up_hosts: Callable[[], list[str]]) -> None:
        self.location = location
        self.root = root  # where a relayed image waits between two hosts
        self._options = options  # the location's, as hosts are added and removed
        self.conn = conn
        self.up_hosts = up_hosts

    @property
    def options(self) -> Any:
        return self._options()

    def pool(self, host: str) -> Any:
        lv = _libvirt()
        c = self.conn(host)
        path = (self.options.storage.pool_path if host == STORAGE and self.options.storage
                else self.options.pool_path)
        with libvirt_errors():
            try:
                pool = c.storagePoolLookupByName(POOL)
            except lv.libvirtError:
                pool = c.storagePoolDefineXML(
                    f"<pool type='dir'><name>{POOL}</name><target><path>"
                    f"{path}</path></target></pool>", 0)
                pool.build(0)
                pool.setAutostart(1)
            if not pool.isActive():
                pool.create(0)
            return pool

    def vol_path(self, name: str) -> str:
        return str(PurePosixPath(self.options.pool_path) / name)

    def images_on(self, host: str) -> set[str]:
        lv = _libvirt()
        with contextlib.suppress(OnepaneError, lv.libvirtError):
            pool = self.pool(host)
            pool.refresh(0)
            names = set(pool.listVolumes())
            return {n for n in names if f"{n}.ok" in names}
        return set()

    def ensure_image(self, host: str, image: str) -> tuple[str, int]:
        """The image's path on the host and its virtual size; a host that lacks it gets it
        from one that has it, relayed through onepane (hosts need not reach each other's
        storage)."""
        if image not in self.images_on(host):
            source = next((h for h in self.up_hosts() if image in self.images_on(h)), None)
            if source is None:
                raise InvalidInput(f"unknown image {image!r} at {self.location}", field="image")
            with tempfile.TemporaryDirectory(dir=self.root) as tmp:
                copy_path = Path(tmp) / image
                self.download_to(source, image, copy_path)
                fmt = image.rsplit(".", 1)[-1]
                self.upload(host, image, copy_path, "raw" if fmt == "raw" else "qcow2")
                marker = self.download(source, f"{image}.ok", 1024)
                self.upload(host, f"{image}.ok", marker or b"ok")
        pool = self.pool(host)
        with libvirt_errors():
            pool.refresh(0)
            capacity = int(pool.storageVolLookupByName(image).info()[1])  # the virtual size
        return self.vol_path(image), capacity

    def upload(self, host: str, name: str, data: bytes | Path, fmt: str = "raw") -> None:
        lv = _libvirt()
        c = self.conn(host)
        pool = self.pool(host)
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        with libvirt_errors():
            with contextlib.suppress(lv.libvirtError):
                pool.storageVolLookupByName(name).delete(0)
            vol = pool.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>"
                                 f"{max(size, 1)}</capacity><target><format type='{fmt}'/>"
                                 "</target></volume>", 0)
            if size == 0:
                return
            stream = c.newStream(0)
            vol.upload(stream, 0, size, 0)
            if isinstance(data, bytes):
                view = memoryview(data)
                sent = 0
                while sent < size:
                    sent += stream.send(view[sent:sent + 262144].tobytes())
            else:
                with open(data, "rb") as f:
                    stream.sendAll(lambda _s, n, fh: fh.read(n), f)
            stream.finish()

    def download(self, host: str, name: str, max_bytes: int) -> bytes:
        lv = _libvirt()
        c = self.conn(host)
        pool = self.pool(host)
        with libvirt_errors():
            pool.refresh(0)
            try:
                vol = pool.storageVolLookupByName(name)
            except lv.libvirtError:
                return b""
            size = vol.info()[1]
            offset = max(0, size - max_bytes)
            stream = c.newStream(0)
            vol.download(stream, offset, size - offset, 0)
            chunks: list[bytes] = []
            stream.recvAll(lambda _s, buf, acc: acc.append(bytes(buf)) or len(buf), chunks)
            stream.finish()
            return b"".join(chunks)

    def download_to(self, host: str, name: str, dest: Path) -> None:
        c = self.conn(host)
        pool = self.pool(host)
        with libvirt_errors(), open(dest, "wb") as f:
            vol = pool.storageVolLookupByName(name)
            stream = c.newStream(0)
            vol.download(stream, 0, 0, 0)  # length 0: all of it
            stream.recvAll(lambda _s, buf, fh: fh.write(buf), f)
            stream.finish()

    def replicate(self, hosts: list[str], image: str, path: Path, fmt: str, sha256: str,
                  progress: Callable[[float], None]) -> None:
        """The image on each of `hosts` that lacks it, with the marker that says the upload
        finished (a host that missed it gets it, relayed, when a VM there first needs it)."""
        for n, host in enumerate(hosts):
            if image not in self.images_on(host):
                self.upload(host, image, path, fmt)
                self.upload(host, f"{image}.ok", sha256.encode())
            progress((n + 1) / len(hosts))

    def remove(self, hosts: list[str], image: str) -> bool:
        """The image off each of `hosts` that holds it, its upload marker first (a copy cut
        short reads as an upload that never finished, never as an image). Whether any had it."""
        lv = _libvirt()
        found = False
        for host in hosts:
            pool = self.pool(host)
            with libvirt_errors():
                pool.refresh(0)
                names = set(pool.listVolumes())
                for name in (f"{image}.ok", image):
                    if name in names:
                        found = True
                        with contextlib.suppress(lv.libvirtError):  # gone meanwhile
                            pool.storageVolLookupByName(name).delete(0)
        return found

    def delete_volumes(self, host: str, instance: str) -> None:
        """Every volume of the instance in the host's pool (its disks and small files)."""
        lv = _libvirt()
        with contextlib.suppress(OnepaneError, lv.libvirtError):
            pool = self.pool(host)
            pool.refresh(0)
            for name in pool.listVolumes():
                if name.startswith(f"{instance}-"):
                    with contextlib.suppress(lv.libvirtError):
                        pool.storageVolLookupByName(name).delete(0)
