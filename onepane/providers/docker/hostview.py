"""What a docker location remembers of its hosts between calls, so that a create or a sync
costs a call or two per host, not one per image or container.

Each host's catalog images (tag -> image id) are asked again after IMAGES_TTL_S, and at once
after an import; an image's published port is kept by image id (an image's configuration never
changes); a host's memory is asked once a minute.
"""

from __future__ import annotations

import time

from .engines import DockerEngines

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
