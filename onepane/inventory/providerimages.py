"""Images as each location's provider lists them, every location asked at once, with a
deadline: one hung cloud must not hold a listing of all (issue 35)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from ..errors import OnepaneError, TransientProviderError
from ..model import Image
from .locations import Locations

IMAGE_LIST_DEADLINE_S = 10.0  # a listing across locations answers with what came by then


class ProviderImages:
    def __init__(self, locations: Locations, answer_deadline: float = IMAGE_LIST_DEADLINE_S
                 ) -> None:
        self.locations = locations
        self.answer_deadline = answer_deadline  # how long a listing waits for a location

    def list_images(self, locations: list[str] | None = None, name: str | None = None,
                    limit: int = 200) -> list[Image]:
        """Images as each location's provider lists them, all locations asked concurrently."""
        return self.images_within(locations, name, limit)[0]

    def images_within(self, locations: list[str] | None = None, name: str | None = None,
                      limit: int = 200) -> tuple[list[Image], dict[str, str]]:
        """The images of the locations that answered within the deadline, and for each one
        that did not, why: one hung cloud held a listing of every location for a minute."""
        registry = self.locations.registry
        names = locations or registry.names()
        futures = {n: registry.submit(n, lambda n=n: registry.get(n).list_images()) for n in names}
        deadline_s = self.answer_deadline
        concurrent.futures.wait(futures.values(), timeout=deadline_s)
        missing: dict[str, str] = {}
        answers: dict[str, list[Any]] = {}
        for n, fut in futures.items():
            if not fut.done():
                fut.cancel()
                missing[n] = f"did not answer within {deadline_s:g} s"
            elif (exc := fut.exception()) is not None:
                if len(names) == 1 or not isinstance(exc, OnepaneError):
                    raise exc
                missing[n] = exc.detail
            else:
                answers[n] = fut.result()
        out = [Image(id=img.provider_id, name=img.name, location=n, extra=img.extra)
               for n, imgs in answers.items() for img in imgs
               if not name or name.lower() in img.name.lower()][:limit]
        if len(names) == 1 and missing:
            raise TransientProviderError(f"location {names[0]} {missing[names[0]]}")
        return out, missing
