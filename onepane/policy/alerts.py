"""Alerts: policy decisions, SLA violations and failovers POSTed to webhooks.

Each delivery is JSON signed with HMAC-SHA256 over `<timestamp>.<body>` (header
`X-Onepane-Signature: t=<timestamp>,v1=<hex>`), so a receiver can check both who sent it and
that it is fresh. Deliveries are retried with exponential backoff on connection errors, 5xx
and 429; other 4xx answers are final. A bounded queue keeps a dead receiver from holding memory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ..config import Webhook
from ..events import EventLog
from ..model import Event, utc_iso

log = logging.getLogger(__name__)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """What a receiver does (used by the tests; shown in the README)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    return abs(time.time() - ts) <= tolerance and hmac.compare_digest(sign(secret, ts, body), header)


@dataclass
class Delivery:
    hook: Webhook
    event: Event


class Alerts:
    def __init__(self, events: EventLog, hooks: list[Webhook], queue_size: int = 10_000,
                 when: Callable[[], bool] = lambda: True) -> None:
        self.events = events
        self.hooks = hooks
        self.when = when  # one node delivers (the leader sees every node's events)
        self.queue: queue.Queue[Delivery | None] = queue.Queue(queue_size)
        self.delivered = self.failed = self.dropped = 0
        self._http = httpx.Client(timeout=5.0)
        self._thread: threading.Thread | None = None
        self._unsubscribe = None if not hooks else events.subscribe(self._on_event)

    def start(self) -> None:
        if self.hooks:
            self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        if self._thread:
            self.queue.put(None)
            self._thread.join(5)
        self._http.close()

    def _on_event(self, ev: Event) -> None:
        if not self.when():
            return
        for hook in self.hooks:
            if any(fnmatch.fnmatchcase(ev.kind, pattern) for pattern in hook.events):
                try:
                    self.queue.put_nowait(Delivery(hook, ev))
                except queue.Full:
                    self.dropped += 1

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            self._deliver(item)

    def _deliver(self, d: Delivery) -> None:
        body = json.dumps({"id": d.event.id, "kind": d.event.kind, "severity": d.event.severity,
                           "ts": utc_iso(d.event.ts), "location": d.event.location,
                           "subject": d.event.subject, "message": d.event.message,
                           "data": d.event.data}).encode()
        delay = d.hook.backoff
        for attempt in range(1, d.hook.attempts + 1):
            headers = {"Content-Type": "application/json", "X-Onepane-Event": d.event.kind,
                       "X-Onepane-Delivery": f"{d.event.id}", "X-Onepane-Attempt": str(attempt),
                       "X-Onepane-Signature": sign(d.hook.secret, int(time.time()), body)}
            try:
                r = self._http.post(d.hook.url, content=body, headers=headers)
                if r.status_code < 300:
                    self.delivered += 1
                    return
                if r.status_code < 500 and r.status_code != 429:
                    log.warning("webhook %s refused event %s: HTTP %s", d.hook.url, d.event.id,
                                r.status_code)
                    break
                why = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            if attempt < d.hook.attempts:
                log.info("webhook %s: %s, retrying in %.1f s", d.hook.url, why, delay)
                time.sleep(delay)
                delay *= 2
        self.failed += 1
        log.warning("webhook %s: giving up on event %s", d.hook.url, d.event.id)
