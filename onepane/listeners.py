"""Callbacks that threads register and others call: the event log's listeners (event streams,
webhooks) and the job runner's watchers (requests waiting for a job's end)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Listeners(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Callable[[T], None]] = []

    def add(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Register `listener`; returns the way to remove it (safe to call twice)."""
        with self._lock:
            self._items.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._items:
                    self._items.remove(listener)
        return remove

    def snapshot(self) -> list[Callable[[T], None]]:
        """Those registered now, to call outside the lock (a listener may remove itself)."""
        with self._lock:
            return list(self._items)
