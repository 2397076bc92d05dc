"""The address plans of a location that keeps its networks itself (process and netns data
centers): a table in the location's folder, read as untrusted input (atomic.read_table), where
no two networks overlap."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import Conflict, InvalidInput
from ..model import new_id
from .base import ObservedNetwork


class NetworkTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def observed(self) -> list[ObservedNetwork]:
        return [ObservedNetwork(provider_id=k, **v) for k, v in self._load().items()]

    def create(self, name: str, cidr: str) -> ObservedNetwork:
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise InvalidInput(f"{cidr!r} is not a network: {exc}", field="cidr") from exc
        with self._lock:
            nets = self._load()
            for other in nets.values():
                if net.overlaps(ipaddress.ip_network(other["cidr"])):
                    raise Conflict(f"{cidr} overlaps network {other['name']} ({other['cidr']})",
                                   field="cidr")
            nid = new_id("lnet")
            nets[nid] = {"name": name, "cidr": str(net), "state": "available"}
            atomic.write_json(self.path, nets)
            return ObservedNetwork(provider_id=nid, **nets[nid])

    def delete(self, provider_id: str) -> None:
        with self._lock:
            nets = self._load()
            if nets.pop(provider_id, None) is not None:
                atomic.write_json(self.path, nets)

    def _load(self) -> dict[str, dict[str, Any]]:
        return atomic.read_table(self.path, "network table")
