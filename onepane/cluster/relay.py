"""Events written by any node reach every node's listeners (event streams, the console).

Each event's transaction sends `NOTIFY onepane_events` (PostgreSQL delivers it on commit); each
node LISTENs on a connection of its own and then reads the events it has not published yet.
It also looks every second without a notification, so a lost one delays, never loses.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from ..events import CHANNEL, EventLog
from ..store.db import Store

log = logging.getLogger(__name__)


class EventRelay:
    def __init__(self, store: Store, events: EventLog) -> None:
        self.dsn = store.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self.events = events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="event-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(3)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
                        self.events.catch_up()
            except Exception as exc:
                log.warning("event relay: %s; again in 1 s", exc)
                self._stop.wait(1.0)
