"""The background loops (inventory sync, reconciler, metrics sampler) share one shape."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls `tick` now and then every `interval` seconds on a daemon thread until stopped. A
    tick that raises is logged and the loop goes on: one bad pass must not end the loop."""

    def __init__(self, name: str, tick: Callable[[], object], interval: float,
                 when: Callable[[], bool] = lambda: True) -> None:
        self.name = name
        self.tick = tick
        self.interval = interval
        self.when = when  # e.g. "this node leads": the loop idles on the others
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.when():
                    self.tick()
            except Exception:
                log.exception("%s: pass failed", self.name)
            self._stop.wait(self.interval)
