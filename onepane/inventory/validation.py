"""Whether a location has an image and a size, asked once per burst: a burst of creates of
one kind would otherwise ask a cloud's API once each, behind the location's few workers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from .locations import Locations

VALIDATE_TIMEOUT_S = 10.0
VALIDATED_FOR = 30.0  # seconds a location's yes to an (image, size) is taken as still true


class Validation:
    def __init__(self, locations: Locations) -> None:
        self.locations = locations
        self._validated: dict[tuple[str, str, str], float] = {}  # (location, image, size) -> until
        self._validating: dict[tuple[str, str, str], Future[None]] = {}  # being asked now
        self._validating_lock = threading.Lock()

    def check(self, location: str, image: str, size: str) -> None:
        """Ask the location whether it has this image and size, unless it said yes within the
        last VALIDATED_FOR seconds: a burst of creates of one kind asks once, not once each
        (each asking a cloud's API, behind the location's few quick workers). In the
        location's pool with a deadline: a hung endpoint answers 503 for its own location's
        requests and holds no API thread for long."""
        key = (location, image, size)
        now = time.monotonic()
        if self._validated.get(key, 0.0) > now:
            return
        with self._validating_lock:  # the same question already asked: wait for its answer
            asked = self._validating.get(key)
            if asked is None:
                asked = self._validating[key] = Future()
                mine = True
            else:
                mine = False
        if not mine:
            asked.result(timeout=VALIDATE_TIMEOUT_S + 1)  # its answer, or its error, raised
            return
        try:
            self.locations.registry.run(location, lambda p: p.validate(image, size),
                                        timeout=VALIDATE_TIMEOUT_S)
            if len(self._validated) > 10_000:
                self._validated.clear()
            self._validated[key] = now + VALIDATED_FOR
            asked.set_result(None)
        except BaseException as exc:
            asked.set_exception(exc)
            raise
        finally:
            with self._validating_lock:
                self._validating.pop(key, None)
