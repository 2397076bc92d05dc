"""What a docker location knows of its hosts: what it remembers between calls (so that a
create or a sync costs a call or two per host, not one per image or container), where a new
container goes, and each host as an operator sees it.

Each host's catalog images (tag -> image id) are asked again after IMAGES_TTL_S, and at once
after an import; an image's published port is kept by image id (an image's configuration never
changes); a host's memory is asked once a minute.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import TransientProviderError
from ..base import InstanceSpec
from .engines import DockerEngines
from .sizes import SIZES

if TYPE_CHECKING:
    from .provider import DockerProvider

IMAGE_REPO = "onepane-img"  # every catalog image loaded here is tagged onepane-img/<id>:1
IMAGES_TTL_S = 5.0
MEMORY_TTL_S = 60.0


class HostView:
    def __init__(self, engines: DockerEngines) -> None:
        self.engines = engines
        self._images: dict[str, tuple[float, dict[str, str]]] = {}  # host -> (when, tag -> id)
        self._ports: dict[str, str | None] = {}  # image id -> its published port
        self._memory: dict[str, tuple[float, int]] = {}  # host -> (when, MemTotal)

    def images_on(self, host: str) -> dict[str, str]:
        """tag -> image id of the catalog images the host has."""
        at, tags = self._images.get(host, (0.0, {}))
        if time.monotonic() - at < IMAGES_TTL_S:
            return tags
        found = self.engines.client(host).api.images(filters={"reference": f"{IMAGE_REPO}/*"})
        tags = {t: img["Id"] for img in found for t in img.get("RepoTags") or []
                if t.startswith(f"{IMAGE_REPO}/")}
        self._images[host] = (time.monotonic(), tags)
        return tags

    def imported(self, host: str) -> None:
        self._images.pop(host, None)

    def port_of(self, host: str, image_id: str) -> str | None:
        """The image's first exposed TCP port ("80/tcp"): the one onepane publishes."""
        if image_id not in self._ports:
            config = self.engines.client(host).api.inspect_image(image_id).get("Config") or {}
            tcp = sorted(p for p in config.get("ExposedPorts") or {} if p.endswith("/tcp"))
            self._ports[image_id] = tcp[0] if tcp else None
        return self._ports[image_id]

    def memory(self, host: str) -> int:
        at, total = self._memory.get(host, (0.0, 0))
        if time.monotonic() - at > MEMORY_TTL_S:
            total = int(self.engines.client(host).info().get("MemTotal") or 0)
            self._memory[host] = (time.monotonic(), total)
        return total


def place(p: DockerProvider, spec: InstanceSpec) -> str:
    """The answering host with the image, the fewest of this deployment's replicas, then the
    most memory not promised to running containers."""
    dep = spec.tags.get("onepane:deployment")
    best: tuple[int, int, str] | None = None
    for host in p.engines.up():
        if spec.image not in p.view.images_on(host):
            continue
        mine = p.containers_on(host)
        promised = sum(SIZES.get(p.size_label(x), SIZES["docker.small"])[1] << 20 for x in mine)
        same = sum(1 for x in mine
                   if dep and (x.get("Labels") or {}).get("onepane.deployment") == dep)
        key = (same, -(p.view.memory(host) - promised), host)
        if best is None or key < best:
            best = key
    if best is None:
        raise TransientProviderError(f"no answering docker host of {p.location} has image "
                                     f"{spec.image}")
    return best[2]


def host_rows(p: DockerProvider) -> list[dict[str, Any]]:
    """Each host as an operator sees it (`onepane hosts list`): up or unreachable (why), its
    memory, what onepane's running containers are promised, its containers."""
    out = []
    for h in p.options.hosts:
        row: dict[str, Any] = {"name": h.name, "uri": h.url, "state": "unreachable",
                               "maintenance": False}
        try:
            mine = p.containers_on(h.name, everything=True)
            total = p.view.memory(h.name)
        except Exception as exc:  # the SDK's own errors too: the host is not usable now
            row["error"] = getattr(exc, "detail", None) or str(exc)[:200]
            out.append(row)
            continue
        running = [x for x in mine if x.get("State") == "running"]
        committed = sum(SIZES.get(p.size_label(x), SIZES["docker.small"])[1] for x in running)
        row.update(state="up", memory_mb=total >> 20, committed_mb=committed,
                   free_mb=(total >> 20) - committed, vms=len(running),
                   instances=sorted((x.get("Names") or ["/"])[0].lstrip("/") for x in mine))
        out.append(row)
    return out
