"""The metrics store (SQLite: sampling, retention, downsampling) and signed, retried webhooks
delivered over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from onepane.config import Webhook
from onepane.events import EventLog
from onepane.policy.alerts import Alerts, verify
from onepane.policy.metrics import Metrics
from onepane.store.db import Store
from tests.helpers import wait_for

SECRET = "a-webhook-secret-of-some-length"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.migrate()
    yield s
    s.close()


def test_rates_retention_and_downsampling(store: Store) -> None:
    m = Metrics(store, raw_retention=120, retention=600, write_every=5, compact_every=1e9)
    t0 = 1_800_000_000.0  # a minute boundary
    replicas = [{"id": "inst-1", "location": "dc-a", "up": True, "check_ms": 1.5, "cpu": 12.5,
                 "memory": 50_000_000}]
    for i in range(40):  # 200 s, one look every 5 s, 100 req/s at dc-a, 2 failures/s
        live = m.observe("shop", {"by_location": {"dc-a": 500 * i}, "failed": 10 * i, "p95_ms": 4.0},
                         replicas, now=t0 + 5 * i)
        m.flush(now=t0 + 5 * i)
    assert live.rps == {"dc-a": 100.0} and live.errors_per_s == 2.0 and live.cpu == {"inst-1": 12.5}
    series = {s["name"]: s for s in m.query("shop", since=3600, now=t0 + 200)}
    assert set(series) >= {"rps", "errors_per_s", "p95_ms", "up", "check_ms", "cpu_percent",
                           "memory_bytes"}
    assert len(series["cpu_percent"]["points"]) == 40

    # at t0+200, raw samples before the minute t0+60 (older than 120 s, whole minutes) fold
    folded, dropped = m.compact(now=t0 + 200)
    assert folded == 12 * 7 - 2 and dropped == 0  # 12 looks x 7 series, no rates at the first
    assert m.compact(now=t0 + 200) == (0, 0)  # a minute is folded once
    cpu = m.query("shop", "cpu_percent", since=3600, now=t0 + 200)[0]["points"]
    assert [(p[0], p[2]) for p in cpu if p[2] == 60] == [(t0, 60)]
    assert len([p for p in cpu if p[2] == 0]) == 40 - 12 and all(p[1] == 12.5 for p in cpu)
    m.compact(now=t0 + 260)  # the next minute folds into its own average
    cpu = m.query("shop", "cpu_percent", since=3600, now=t0 + 260)[0]["points"]
    assert [p[0] for p in cpu if p[2] == 60] == [t0, t0 + 60]

    m.compact(now=t0 + 200 + 600)  # everything is past retention
    assert m.query("shop", since=10_000, now=t0 + 900) == []


class Receiver(BaseHTTPRequestHandler):
    replies: list[int] = []
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((dict(self.headers), body))
        self.send_response(self.replies.pop(0) if self.replies else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.replies, Receiver.got = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhooks_are_signed_retried_and_filtered(store: Store, receiver: str) -> None:
    events = EventLog(store)
    hook = Webhook(url=receiver, secret=SECRET, events=["policy.*", "sla.violation"], backoff=0.05)
    alerts = Alerts(events, [hook])
    alerts.start()
    try:
        Receiver.replies = [503, 503]  # the receiver is down twice, then takes it
        events.emit("policy.scale_out", "shop: scale out at dc-a: rps_per_replica 120 > 50",
                    subject="shop", location="dc-a", data={"from": 1, "to": 2})
        events.emit("instance.created", "not an alert")
        wait_for(lambda: alerts.delivered == 1, 10, what="delivery after retries")
        assert len(Receiver.got) == 3
        assert [h["X-Onepane-Attempt"] for h, _ in Receiver.got] == ["1", "2", "3"]
        headers, body = Receiver.got[-1]
        assert verify(SECRET, headers["X-Onepane-Signature"], body)
        assert not verify("another-secret-of-some-length", headers["X-Onepane-Signature"], body)
        assert not verify(SECRET, headers["X-Onepane-Signature"], body + b" ")
        doc = json.loads(body)
        assert doc["kind"] == "policy.scale_out" and doc["data"] == {"from": 1, "to": 2}

        Receiver.replies = [400]  # a refusal is final: no retry
        events.emit("sla.violation", "shop: availability 99.1% below 99.9%", subject="shop")
        wait_for(lambda: alerts.failed == 1, 10, what="final refusal")
        assert len(Receiver.got) == 4
        assert SECRET not in repr(hook)  # the secret is not in logs or reprs
    finally:
        alerts.stop()
