"""Images, sizes and locations as OCCI mixins, cached briefly: asking every provider for its
images on each request would make a listing as slow as the slowest cloud."""

from __future__ import annotations

import math
import threading
import time

from ...core import Core
from .categories import Templates, location_mixin, os_tpl, resource_tpl

TTL = 15.0


class TemplateCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Templates | None = None
        self._at = 0.0

    def get(self, core: Core) -> Templates:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > TTL:
                self._value, self._at = build(core), time.monotonic()
            return self._value


def build(core: Core) -> Templates:
    tpl = Templates()
    for loc in core.locations.list():
        mixin = location_mixin(loc.name, f"{loc.name} ({loc.provider}, {loc.region})")
        tpl.locations[mixin.id] = mixin
        tpl.native[mixin.id] = (loc.name, loc.name)
        try:
            sizes = core.registry.run(loc.name, lambda p: p.list_sizes(), timeout=30)
        except Exception:  # an unreachable location has no templates now; the rest still do
            sizes = []
        for size in sizes:
            m = resource_tpl(loc.name, size.provider_id, f"size {size.provider_id} at {loc.name}")
            tpl.resource[m.id] = m
            tpl.native[m.id] = (loc.name, size.provider_id)
            attrs: dict[str, float] = {}
            if size.cpu:  # an Integer in GFD.224: a fractional vCPU counts as a whole core
                attrs["occi.compute.cores"] = max(1, math.ceil(float(size.cpu)))
            if size.memory_mb:
                attrs["occi.compute.memory"] = round(size.memory_mb / 1024, 3)
            tpl.size_attrs[m.id] = attrs
        if sizes:
            tpl.default_size[loc.name] = min(sizes, key=lambda s: (s.memory_mb or 0, s.cpu or 0)
                                             ).provider_id
    try:
        images = core.ops.images.list_images(limit=10_000)
    except Exception:
        images = []
    for img in sorted(images, key=lambda i: (i.location, i.id)):
        m = os_tpl(img.location, img.id, f"{img.name} at {img.location}")
        tpl.os[m.id] = m
        tpl.native[m.id] = (img.location, img.id)
        tpl.default_os.setdefault(img.location, m.id)
    return tpl
