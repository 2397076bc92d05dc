"""Volumes of a docker location: Docker volumes, on the host of the container they serve.

A Docker volume lives on one host and is mounted only when a container is created, while
onepane's volumes are made first and attached to a running instance later. So a volume is a
row of the location's table (volumes.json) until its first attach, which creates the Docker
volume (named by the volume's id, labelled `onepane.volume`) on the host that runs the container
and makes the container again with the mount — same name, labels, limits and image; its files
outside volumes are lost, as when a container is replaced. From then on the volume belongs to
that host: attaching it to a container on another host is refused, naming both. The device
name onepane's API takes (`/dev/sdh`) becomes the mount point `/mnt/sdh`. A volume's size is
recorded, not enforced (Docker's local driver has no quota).
"""

from __future__ import annotations

import threading
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, TransientProviderError
from ...model import new_id
from ..base import ObservedVolume
from ..volumetable import VolumeTable

if TYPE_CHECKING:
    from .provider import DockerProvider

VOLUME_LABEL = "onepane.volume"


def mount_point(device: str) -> str:
    return f"/mnt/{PurePosixPath(device).name}"


class DockerVolumes:
    def __init__(self, provider: DockerProvider) -> None:
        self.p = provider
        self.table = VolumeTable(provider.location, provider.root / "volumes.json")
        self._lock = threading.Lock()

    def observed(self) -> list[ObservedVolume]:
        return [ObservedVolume(provider_id=k, name=v["name"], size_gb=v["size_gb"],
                               state=v["state"], attached_to=v.get("attached_to"),
                               device=v.get("device"))
                for k, v in self.table.load().items()]

    def create(self, name: str, size_gb: int) -> ObservedVolume:
        with self._lock:
            self.p.root.mkdir(parents=True, exist_ok=True)
            return self.table.add(self.table.load(), new_id("dvol"), name, size_gb)

    def attach(self, volume_id: str, instance_id: str, device: str) -> None:
        with self._lock:
            vols = self.table.load()
            vol = self.table.get(vols, volume_id)
            self.table.attachable(vol, volume_id, instance_id)
            host, ctr = self.p.located(instance_id)
            if vol.get("host") not in (None, host):
                raise Conflict(f"volume {volume_id} is on docker host {vol['host']}, and "
                               f"{instance_id} runs on {host}: a Docker volume does not leave "
                               "its host", field="volume")
            client = self.p.engines.client(host)
            if not client.volumes.list(filters={"name": volume_id}):
                client.volumes.create(name=volume_id, labels={VOLUME_LABEL: volume_id})
            mounts = {**self._mounts(ctr), volume_id: mount_point(device)}
            self._recreate(host, ctr, mounts)
            vol.update(attached_to=instance_id, device=device, state="in-use", host=host)
            self.table.save(vols)

    def detach(self, volume_id: str) -> None:
        with self._lock:
            vols = self.table.load()
            vol = self.table.get(vols, volume_id)
            if vol["attached_to"]:
                found = self.p.locate(vol["attached_to"])
                if found is not None:
                    mounts = self._mounts(found[1])
                    mounts.pop(volume_id, None)
                    self._recreate(found[0], found[1], mounts)
            self.table.detached(vols, vol)

    def delete(self, volume_id: str) -> None:
        with self._lock:
            vols = self.table.load()
            if volume_id not in vols:
                return
            if vols[volume_id]["attached_to"]:
                raise Conflict(f"volume {volume_id} is attached; detach it first",
                               field="volume")
            host = vols[volume_id].get("host")
            if host is not None:
                try:
                    client = self.p.engines.client(host)
                except TransientProviderError as exc:
                    raise TransientProviderError(f"volume {volume_id} is on docker host "
                                                 f"{host}, which does not answer: "
                                                 f"{exc.detail}") from None
                for v in client.volumes.list(filters={"name": volume_id}):
                    v.remove(force=True)
            self.table.delete(volume_id, self.p.root / "no-file")

    def forget_instance(self, instance_id: str) -> None:
        """Its container is gone: its volumes are available again (on their host)."""
        with self._lock:
            if self.table.path.exists():
                self.table.detach_all(instance_id)

    def _recreate(self, host: str, ctr: Any, volumes: dict[str, str]) -> None:
        """The container again, with these volumes (name -> mount point): a container's mounts
        are fixed at create. Same name, labels, image, limits and published port; it runs
        again if it ran."""
        attrs, c = ctr.attrs, self.p.engines.client(host)
        hc, cfg = attrs.get("HostConfig") or {}, attrs.get("Config") or {}
        port = next(iter(hc.get("PortBindings") or {}), None)
        ran = ctr.status in ("running", "paused")
        ctr.remove(force=True)
        new = c.containers.create(
            cfg.get("Image"), name=ctr.name, init=True, detach=True, labels=cfg.get("Labels"),
            cpu_period=hc.get("CpuPeriod") or None, cpu_quota=hc.get("CpuQuota") or None,
            mem_limit=hc.get("Memory") or None, memswap_limit=hc.get("MemorySwap") or None,
            ports={port: (self.p.address(host), None)} if port else {},
            volumes={name: {"bind": path, "mode": "rw"} for name, path in volumes.items()})
        if ran:
            new.start()

    @staticmethod
    def _mounts(ctr: Any) -> dict[str, str]:
        return {m["Name"]: m["Destination"] for m in ctr.attrs.get("Mounts") or []
                if m.get("Type") == "volume" and m.get("Name")}
