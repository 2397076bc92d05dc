"""The drills' and benches' load generator against a real HTTP server: a rate spread over
processes of their own still leaves on one schedule, and every process's requests are read
back (issue 27: one process's pool was the queue the bench measured)."""

from __future__ import annotations

import http.server
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from onepane.traffic.openloop import CLIENT_RATE, LoadProcess, load_shots
from tests.helpers import wait_for


class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the pools expect

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("X-Served-By", "here")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_a_rate_spread_over_processes_keeps_one_schedule(server: str, tmp_path: Path) -> None:
    rate = 2 * CLIENT_RATE
    load = LoadProcess(server, tmp_path / "shots.jsonl", rate=rate)
    assert load.processes == 2
    load.start()
    try:
        wait_for(lambda: len(load.snapshot()) >= rate, 20, what="a second's worth of answers")
        assert load.cpu_seconds() > 0
    finally:
        load.stop()
    shots = load.snapshot()
    assert all(out.stat().st_size > 0 for out in load.outputs), "every process sent"
    assert load.failed() == 0
    # one schedule: the processes' requests interleave 1/rate apart, not in pairs at one instant
    dues = sorted(s.due for s in shots)[:int(rate)]
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert min(gaps) > 0.5 / rate, min(gaps)
    assert abs(sum(gaps) / len(gaps) - 1 / rate) < 0.2 / rate
    # a bench reading the files afterwards sees the same requests
    assert len(load_shots(str(tmp_path / "shots.jsonl")).shots) == len(shots)
