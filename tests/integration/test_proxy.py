"""The built-in data plane as a real process: HTTP semantics, retries, TCP mode, reloads."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers import free_port, port_open, wait_for


class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, status: int = 200) -> None:
        self.name, self.status, self.posts = name, status, 0
        self.silent = threading.Event()  # set: take requests and never answer (a silent cut)
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self) -> None:
                if outer.silent.is_set():
                    outer.released.wait(60)
                    return
                body = json.dumps({"location": outer.name}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = reply

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts += 1
                self.reply()

            def log_message(self, *a: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def addr(self) -> list[Any]:
        return ["127.0.0.1", self.server_address[1]]


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Any]:
    procs = []

    def start(pools: list[dict[str, Any]], mode: str = "http", policy: str = "ordered",
              **settings: Any) -> str:
        port = free_port()
        cfg = tmp_path / f"p{port}.json"
        cfg.write_text(json.dumps({"listen": f"127.0.0.1:{port}", "mode": mode, "policy": policy,
                                   "pools": pools, "attempt_timeout": 1.0, **settings}))
        p = subprocess.Popen([sys.executable, "-m", "onepane.traffic.proxy", str(cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append((p, cfg))
        wait_for(lambda: port_open("127.0.0.1", port), 10, what="proxy")
        return f"http://127.0.0.1:{port}"
    yield start
    for p, _ in procs:
        p.terminate()
        p.wait(5)


def httpecho(name: str) -> tuple[subprocess.Popen[bytes], list[Any]]:
    port = free_port()
    app = Path(__file__).resolve().parents[2] / "onepane" / "apps" / "httpecho"
    p = subprocess.Popen([sys.executable, "server.py"], cwd=app,
                         env={"PORT": str(port), "ONEPANE_LOCATION": name})
    wait_for(lambda: port_open("127.0.0.1", port), 10, what="httpecho")
    return p, ["127.0.0.1", port]


def test_http_semantics_and_local_failover(proxy: Any) -> None:
    (pa, a), (pb, b) = httpecho("a"), httpecho("b")
    try:
        url = proxy([{"name": "a", "backends": [a]}, {"name": "b", "backends": [b]}])
        with httpx.Client() as http:
            assert http.get(url + "/x?y=1").json()["location"] == "a"
            head = http.head(url)
            assert head.status_code == 200 and head.content == b""
            pa.kill()  # its connections die with it: the proxy moves to b and stays there
            pa.wait()
            assert [http.get(url).json()["location"] for _ in range(10)] == ["b"] * 10
    finally:
        for p in (pa, pb):
            p.kill()
            p.wait()


def test_retries_a_503_elsewhere_but_never_repeats_a_post(proxy: Any) -> None:
    sick, ok = Backend("sick", status=503), Backend("ok")
    url = proxy([{"name": "all", "backends": [sick.addr, ok.addr]}], policy="weighted")
    with httpx.Client() as http:
        assert all(http.get(url).json() == {"location": "ok"} for _ in range(6))
        statuses = [http.post(url, content=b"x").status_code for _ in range(6)]
    assert 503 in statuses  # a POST that reached the sick backend is not sent again
    assert sick.posts + ok.posts == 6


def test_tcp_mode_and_reload(proxy: Any, tmp_path: Path) -> None:
    a, b = Backend("a"), Backend("b")
    url = proxy([{"name": "a", "backends": [a.addr]}], mode="tcp")
    assert httpx.get(url).json() == {"location": "a"}
    port = int(url.rsplit(":", 1)[1])
    cfg = tmp_path / f"p{port}.json"
    body = json.loads(cfg.read_text())
    body["pools"] = [{"name": "b", "backends": [b.addr]}]
    cfg.write_text(json.dumps(body))
    for proc in psutil.process_iter(["cmdline"]):
        if str(cfg) in " ".join(proc.info["cmdline"] or []):
            proc.send_signal(signal.SIGHUP)
    wait_for(lambda: httpx.get(url).json() == {"location": "b"}, 5, what="reloaded config")
    with socket.create_connection(("127.0.0.1", port)) as s:  # raw bytes pass through
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert b'"location": "b"' in s.recv(4096) + s.recv(4096)


def test_a_client_that_asks_to_close_gets_its_answer_then_the_close(proxy: Any) -> None:
    """`Connection: close` on a request: the proxy closes once it has answered (llhttp forgets
    the header once the request is complete; read too late, it kept the connection open)."""
    url = proxy([{"name": "a", "backends": [Backend("a").addr]}])
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):  # ends at the proxy's close; a timeout raises otherwise
            got += chunk
    assert got.startswith(b"HTTP/1.1 200") and b'"location": "a"' in got


def raw_server(answer: Callable[[socket.socket], None]) -> socket.socket:
    """A listening socket whose every connection `answer` handles, byte by byte as a test
    needs (what http.server would tidy up); close it to stop."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            answer(conn)
    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_response_that_ends_with_its_connection_is_relayed_whole(proxy: Any) -> None:
    """HTTP/1.0 style answers (no length, no chunks: busybox httpd's CGI) end at EOF."""
    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nline 1\n")
            conn.sendall(b"line 2\nend\n")
    server = raw_server(answer)
    try:
        url = proxy([{"name": "old", "backends": [["127.0.0.1", server.getsockname()[1]]]}])
        with httpx.Client() as http:
            for _ in range(3):  # and the closed upstream is never reused
                r = http.get(url + "/cgi-bin/state")
                assert r.status_code == 200 and r.text == "line 1\nline 2\nend\n"
    finally:
        server.close()



@contextlib.contextmanager
def haproxy_over(tmp_path: Path, names: tuple[str, str], policy: str,
                 **timeouts: float) -> Iterator[tuple[Any, int, list[subprocess.Popen[bytes]]]]:
    """HAProxy as onepane drives it, over two httpecho backends named after their locations."""
    from onepane.traffic.dataplane import DataPlaneConfig, PoolConfig
    from onepane.traffic.haproxy import HaproxyDataPlane
    (pa, a), (pb, b) = httpecho(names[0]), httpecho(names[1])
    plane = HaproxyDataPlane(names[0], tmp_path)
    port = free_port()
    try:
        plane.apply(DataPlaneConfig(listen=f"127.0.0.1:{port}", mode="http", policy=policy,
                                    pools=(PoolConfig(names[0], (tuple(a),)),  # type: ignore[arg-type]
                                           PoolConfig(names[1], (tuple(b),))),  # type: ignore[arg-type]
                                    **timeouts))
        yield plane, port, [pa, pb]
    finally:
        plane.stop()
        for p in (pa, pb):
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


def test_haproxy_counts_locations_whose_names_end_in_a_digit(tmp_path: Path) -> None:
    with haproxy_over(tmp_path, ("drill-1", "aws-us-east-1"), "weighted") as (plane, port, _):
        with httpx.Client() as http:
            seen = {http.get(f"http://127.0.0.1:{port}/").json()["location"] for _ in range(10)}
        assert seen == {"drill-1", "aws-us-east-1"}
        counts = plane.stats()["by_location"]
        assert counts["drill-1"] + counts["aws-us-east-1"] == 10 and min(counts.values()) > 0


def test_a_request_waiting_on_a_backend_gone_silent_is_answered_elsewhere(proxy: Any) -> None:
    """Hedging: slower than k x the backend's recent p99, a GET gets a second copy at the next
    location; the first answer wins. Without it this request would wait its 30 s attempt
    timeout (the client below gives up after 10 s)."""
    a, b = Backend("a"), Backend("b")
    url = proxy([{"name": "a", "backends": [a.addr]}, {"name": "b", "backends": [b.addr]}],
                attempt_timeout=30.0)
    try:
        with httpx.Client(timeout=10) as http:
            assert {http.get(url).json()["location"] for _ in range(40)} == {"a"}
            a.silent.set()
            assert http.get(url).json() == {"location": "b"}
            with pytest.raises(httpx.ReadTimeout):  # a POST is never hedged: it could be applied
                http.post(url, content=b"x", timeout=1.5)  # twice; it waits for its answer
            assert b.posts == 0
    finally:
        a.released.set()


def test_requests_waiting_on_a_location_the_control_plane_leaves_are_resent(
        proxy: Any, tmp_path: Path) -> None:
    """No hedging here: the reload that moves traffic away (health checks saw the location
    fail) re-sends what was waiting there at once."""
    a, b = Backend("a"), Backend("b")
    url = proxy([{"name": "a", "backends": [a.addr]}, {"name": "b", "backends": [b.addr]}],
                attempt_timeout=30.0, hedge_factor=0)
    port = int(url.rsplit(":", 1)[1])
    cfg = tmp_path / f"p{port}.json"
    pid = next(p.pid for p in psutil.process_iter(["cmdline"])
               if str(cfg) in (p.info["cmdline"] or []))
    answers: list[Any] = []
    a.silent.set()
    try:
        t = threading.Thread(target=lambda: answers.append(httpx.get(url, timeout=10).json()))
        t.start()
        wait_for(lambda: a.silent.is_set() and t.is_alive(), 2, what="the request waiting at a")
        settings = json.loads(cfg.read_text())
        settings["pools"] = [{"name": "b", "backends": [b.addr]}, {"name": "a", "backends": [a.addr]}]
        cfg.write_text(json.dumps(settings))
        os.kill(pid, signal.SIGHUP)
        t.join(15)
        assert answers == [{"location": "b"}]
    finally:
        a.released.set()


def test_haproxy_stops_sending_to_a_dead_server_after_its_first_failure(tmp_path: Path) -> None:
    with haproxy_over(tmp_path, ("dc-a", "dc-b"), "ordered", connect_timeout=0.15,
                      attempt_timeout=1.5) as (plane, port, (pa, _pb)):
        url = f"http://127.0.0.1:{port}/"
        with httpx.Client() as http:
            assert http.get(url).json()["location"] == "dc-a"
            pa.kill()
            pa.wait()
            answers = [http.get(url).json()["location"] for _ in range(30)]
        assert answers == ["dc-b"] * 30  # no request failed
        rows = list(csv.DictReader(plane.command("show stat").lstrip("# ").splitlines()))
        dead = next(r for r in rows if r["svname"].startswith("n_dc_a_") and r["status"] != "MAINT")
        # one failed connection marked it down (observe layer4, error-limit 1): the 29 requests
        # after it never went there
        assert int(dead["econ"] or 0) + int(dead["wretr"] or 0) <= 2, dead


class Stream:
    """A backend that answers with an endless chunked stream (server-sent events), one event
    each time the test says so: what the client has seen proves the proxy did not hold it."""

    def __init__(self, content_type: str = "text/event-stream") -> None:
        self.content_type = content_type
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            if not conn.recv(65536):  # a health check's bare connect
                conn.close()
                return
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n".encode())
        except OSError:
            conn.close()
            return
        self.conns.append(conn)

    def send(self, event: str) -> None:
        data = f"data: {event}\n\n".encode()
        self.conns[-1].sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def die(self) -> None:
        """The backend's process dies under the stream: its connection is reset."""
        for conn in self.conns:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
        self.server.close()

    @property
    def addr(self) -> list[Any]:
        return ["127.0.0.1", self.server.getsockname()[1]]


def test_a_stream_flows_as_it_comes_survives_a_failover_and_ends_with_its_backend(
        proxy: Any, tmp_path: Path) -> None:
    """Issue 27: a streamed response is passed on piece by piece (never held until it ends),
    is not cut by the attempt timeout, outlives a reload that moves new traffic elsewhere while
    its backend lives, and ends for the client (no hang) when its backend dies."""
    stream, other = Stream(), Backend("b")
    url = proxy([{"name": "a", "backends": [stream.addr]}, {"name": "b", "backends": [other.addr]}],
                attempt_timeout=1.0)
    port = int(url.rsplit(":", 1)[1])
    cfg = tmp_path / f"p{port}.json"
    with httpx.Client(timeout=10) as http, http.stream(
            "GET", url + "/events", headers={"accept": "text/event-stream"}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        lines = r.iter_lines()
        wait_for(lambda: bool(stream.conns), 5, what="the stream's backend connection")
        for n in range(3):
            stream.send(f"event {n}")  # the next is sent only once this one was read
            assert next(lines) == f"data: event {n}"
            assert next(lines) == ""
        settings = json.loads(cfg.read_text())  # the control plane moves traffic to b
        settings["pools"] = settings["pools"][::-1]
        cfg.write_text(json.dumps(settings))
        pid = next(p.pid for p in psutil.process_iter(["cmdline"])
                   if str(cfg) in (p.info["cmdline"] or []))
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: httpx.get(url).json() == {"location": "b"}, 5, what="new traffic at b")
        threading.Event().wait(1.2)  # longer than the attempt timeout: a stream has none
        stream.send("after the failover")
        assert next(lines) == "data: after the failover"
        assert next(lines) == ""
        stream.die()
        with pytest.raises(httpx.RemoteProtocolError):  # cut short, and said so
            for _ in lines:
                pass


def test_haproxy_passes_a_stream_on_as_it_comes_and_ends_it_with_its_backend(
        tmp_path: Path) -> None:
    """The same stream through HAProxy as onepane configures it (timeout server is the
    attempt timeout; a stream must outlive it)."""
    from onepane.traffic.dataplane import DataPlaneConfig, PoolConfig
    from onepane.traffic.haproxy import HaproxyDataPlane
    stream, other = Stream(), Backend("b")
    plane = HaproxyDataPlane("stream", tmp_path)
    port = free_port()
    try:
        plane.apply(DataPlaneConfig(
            listen=f"127.0.0.1:{port}", mode="http", policy="ordered", attempt_timeout=1.0,
            pools=(PoolConfig("a", (tuple(stream.addr),)),  # type: ignore[arg-type]
                   PoolConfig("b", (tuple(other.addr),)))))  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=10) as http, http.stream(
            "GET", url + "/events", headers={"accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            wait_for(lambda: bool(stream.conns), 5, what="the stream's backend connection")
            for n in range(2):
                stream.send(f"event {n}")
                assert next(lines) == f"data: event {n}"
                assert next(lines) == ""
            threading.Event().wait(1.2)  # quiet for longer than the attempt timeout
            stream.send("still here")
            assert next(lines) == "data: still here"
            assert next(lines) == ""
            stream.die()
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in lines:
                    pass
    finally:
        plane.stop()


def test_a_long_answer_streams_but_a_short_one_cut_short_is_retried_whole(proxy: Any) -> None:
    """A body still coming a moment after its head is a stream and flows (here a chunked
    download that says nothing of streaming); an answer whose backend dies between its head
    and the rest of its body is retried elsewhere, never passed on cut short: an answer that
    ends with its connection (HTTP/1.0 style, busybox's CGI) would look complete to the client
    (seen as empty JSON bodies during a VM's live move)."""
    stream = Stream("application/octet-stream")
    url = proxy([{"name": "a", "backends": [stream.addr]}], attempt_timeout=5.0)
    with httpx.Client(timeout=10) as http, http.stream("GET", url + "/download") as r:
        assert r.status_code == 200
        stream.send("first")  # the rest has not come: the proxy passes on what has
        assert next(r.iter_lines()) == "data: first"
        stream.die()

    def head_then_reset(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
        threading.Event().wait(0.05)  # the body would follow; the backend dies first
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()
    server = raw_server(head_then_reset)
    whole = Backend("b")
    try:
        url = proxy([{"name": "a", "backends": [["127.0.0.1", server.getsockname()[1]]]},
                     {"name": "b", "backends": [whole.addr]}])
        with httpx.Client(timeout=10) as http:
            r = http.get(url + "/state")
            assert r.status_code == 200 and r.json() == {"location": "b"}, r.content
    finally:
        server.close()


def kept_alive_then_idle(port: int) -> float:
    """Two requests on one connection, the second after 3/4 of the bound (answered on the
    same connection); then how long the connection stays open with nothing asked (the close
    awaited with a deadline of three times the bound)."""
    from onepane.traffic.dataplane import CLIENT_KEEPALIVE_S
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for pause in (0.0, CLIENT_KEEPALIVE_S * 0.75):
            time.sleep(pause)  # the gap under test: nothing to wait on but the clock
            s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200"), got[:80]
        idle_from = time.monotonic()
        s.settimeout(CLIENT_KEEPALIVE_S * 3)
        assert s.recv(1) == b""  # the server's close (a timeout raises instead)
        return time.monotonic() - idle_from


@pytest.mark.parametrize("plane", ["builtin", "haproxy"])
def test_an_idle_kept_alive_client_connection_is_closed_on_both_planes(
        plane: str, proxy: Any, tmp_path: Path) -> None:
    """What a burst made an ordinary client open must not stay in its pool for good: both
    planes close a client's keep-alive connection after CLIENT_KEEPALIVE_S (at most twice
    that) with nothing asked, and not while it is in use."""
    from onepane.traffic.dataplane import CLIENT_KEEPALIVE_S
    if plane == "builtin":
        url = proxy([{"name": "a", "backends": [Backend("a").addr]}])
        idle = kept_alive_then_idle(int(url.rsplit(":", 1)[1]))
    else:
        with haproxy_over(tmp_path, ("ka-a", "ka-b"), "ordered") as (_, port, _):
            idle = kept_alive_then_idle(port)
    assert idle >= CLIENT_KEEPALIVE_S * 0.5, idle  # not closed at once: kept alive a while
