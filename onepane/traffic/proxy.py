"""The built-in data plane: an asyncio (uvloop) HTTP/1.1 and TCP proxy, run as its own process.

    python -m onepane.traffic.proxy CONFIG.json      (SIGHUP re-reads the file)

It runs apart from the control plane so that it keeps serving with its last configuration when
the control plane dies. Idempotent requests that fail on one backend (refused, reset, per-attempt
timeout, 502/503/504) are retried on another, so a location failing costs no client request.
HTTP parsing is httptools (llhttp), the parser uvicorn uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httptools

from .balancer import Backend, Balancer, Pool

log = logging.getLogger("onepane.proxy")
IDEMPOTENT = {b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"}
RETRY_STATUS = {502, 503, 504}
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
              b"upgrade", b"trailer", b"content-length"}


@dataclass
class Settings:
    listen: tuple[str, int]
    mode: str = "http"
    connect_timeout: float = 0.25
    attempt_timeout: float = 5.0
    attempts: int = 4
    probe_interval: float = 0.25


def load(path: Path) -> tuple[Settings, Balancer]:
    cfg = json.loads(path.read_text())
    host, port = cfg["listen"].rsplit(":", 1)
    s = Settings(listen=(host, int(port)), mode=cfg.get("mode", "http"),
                 connect_timeout=cfg.get("connect_timeout", 0.25),
                 attempt_timeout=cfg.get("attempt_timeout", 5.0), attempts=cfg.get("attempts", 4),
                 probe_interval=cfg.get("probe_interval", 0.25))
    pools = [Pool(name=p["name"], weight=int(p.get("weight", 1)),
                  backends=[(b[0], int(b[1])) for b in p["backends"]]) for p in cfg["pools"]]
    return s, Balancer(pools=pools, policy=cfg.get("policy", "ordered"))


class Upstreams:
    """Idle keep-alive connections per backend."""

    def __init__(self) -> None:
        self.idle: dict[Backend, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    def take(self, b: Backend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        conns = self.idle.get(b)
        while conns:
            r, w = conns.pop()
            if not w.is_closing() and not r.at_eof():
                return r, w
        return None

    def give(self, b: Backend, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.setdefault(b, []).append(conn)

    def drop(self, b: Backend) -> None:
        for _, w in self.idle.pop(b, []):
            w.close()


class Request:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class Response:
    def __init__(self, head_only: bool) -> None:
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = False
        self.head_only = head_only

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_only:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class BackendFailed(Exception):
    def __init__(self, reason: str, mark_down: bool, sent: bool) -> None:
        super().__init__(reason)
        self.mark_down = mark_down
        self.sent = sent  # the request may have reached the backend


class Proxy:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.settings, self.balancer = load(config)
        self.upstreams = Upstreams()
        self.served = 0
        self.retried = 0

    def reload(self) -> None:
        settings, balancer = load(self.config)
        balancer.down = {b: t for b, t in self.balancer.down.items()
                         if any(b in p.backends for p in balancer.pools)}
        self.settings, self.balancer = settings, balancer
        log.info("configuration reloaded: %s", [p.name for p in balancer.pools])

    # ---- HTTP ----------------------------------------------------------------------------

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = Request()
        parser = httptools.HttpRequestParser(req)  # one parser for every request on the connection
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    return
                if not req.done:
                    continue
                keep = parser.should_keep_alive()
                _, head, body = await self.forward(parser.get_method(), req)
                writer.write(head + body)  # one write, one segment for small replies
                await writer.drain()
                if not keep:
                    return
                req.reset()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def forward(self, method: bytes, req: Request) -> tuple[int, bytes, bytes]:
        body = b"".join(req.body)
        head = [method, b" ", req.url, b" HTTP/1.1\r\n"]
        for name, value in req.headers:
            if name.lower() not in HOP_BY_HOP:
                head += [name, b": ", value, b"\r\n"]
        head += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n"]
        raw = b"".join(head) + body
        tried: set[Backend] = set()
        last = "no backend available"
        for attempt in range(self.settings.attempts):
            choice = self.balancer.choose(tried)
            if choice is None:
                break
            _, backend = choice
            tried.add(backend)
            try:
                status, resp = await self.exchange(backend, raw, method == b"HEAD")
            except BackendFailed as exc:
                last = f"{backend[0]}:{backend[1]} {exc}"
                if exc.mark_down:
                    self.balancer.mark_down(backend)
                    self.upstreams.drop(backend)
                if exc.sent and method not in IDEMPOTENT:
                    break  # it may have been applied: never repeat a non-idempotent request
                self.retried += 1
                continue
            if status in RETRY_STATUS and method in IDEMPOTENT and attempt + 1 < self.settings.attempts:
                last = f"{backend[0]}:{backend[1]} answered {status}"
                self.retried += 1
                continue
            self.served += 1
            return status, *self.render(status, resp, method == b"HEAD")
        msg = f"onepane: no backend could serve the request ({last})\n".encode()
        return 503, (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                     b"content-length: " + str(len(msg)).encode() + b"\r\n\r\n"), msg

    async def exchange(self, b: Backend, raw: bytes, head_only: bool) -> tuple[int, Response]:
        conn = self.upstreams.take(b)
        reused = conn is not None
        if conn is None:
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(*b),
                                              self.settings.connect_timeout)
            except (TimeoutError, OSError) as exc:
                raise BackendFailed(f"connect: {exc or 'timeout'}", True, False) from exc
        r, w = conn
        resp = Response(head_only)
        parser = httptools.HttpResponseParser(resp)
        got_any = False
        try:
            w.write(raw)
            async with asyncio.timeout(self.settings.attempt_timeout):
                while not resp.done:
                    data = await r.read(65536)
                    if not data:
                        raise ConnectionResetError("closed by backend")
                    got_any = True
                    parser.feed_data(data)
        except (TimeoutError, OSError, httptools.HttpParserError) as exc:
            w.close()
            if reused and not got_any and not isinstance(exc, TimeoutError):
                return await self.exchange(b, raw, head_only)  # a stale keep-alive connection
            raise BackendFailed(f"{type(exc).__name__}: {exc}", True, True) from exc
        if not head_only and not any(n.lower() == b"connection" and b"close" in v.lower()
                                     for n, v in resp.headers):
            self.upstreams.give(b, (r, w))
        else:
            w.close()
        return parser.get_status_code(), resp

    @staticmethod
    def render(status: int, resp: Response, head_only: bool) -> tuple[bytes, bytes]:
        body = b"".join(resp.body)
        out = [b"HTTP/1.1 ", str(status).encode(), b" ", resp.reason or b"OK", b"\r\n"]
        for name, value in resp.headers:
            low = name.lower()
            if low in HOP_BY_HOP and not (head_only and low == b"content-length"):
                continue
            out += [name, b": ", value, b"\r\n"]
        if not head_only:
            out += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        out.append(b"\r\n")
        return b"".join(out), (b"" if head_only else body)

    # ---- TCP -----------------------------------------------------------------------------

    async def handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tried: set[Backend] = set()
        upstream = None
        for _ in range(self.settings.attempts):
            choice = self.balancer.choose(tried)
            if choice is None:
                break
            backend = choice[1]
            tried.add(backend)
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(*backend),
                                                  self.settings.connect_timeout)
                break
            except (TimeoutError, OSError):
                self.balancer.mark_down(backend)
        if upstream is None:
            writer.close()
            return
        ur, uw = upstream
        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))

    # ---- health of backends marked down --------------------------------------------------

    async def probe(self) -> None:
        """Re-admit a backend that was marked down once it accepts connections again."""
        while True:
            await asyncio.sleep(self.settings.probe_interval)
            for b in list(self.balancer.down):
                with contextlib.suppress(TimeoutError, OSError):
                    _, w = await asyncio.wait_for(asyncio.open_connection(*b),
                                                  self.settings.connect_timeout)
                    w.close()
                    self.balancer.mark_up(b)

    async def serve(self) -> None:
        handler = self.handle_http if self.settings.mode == "http" else self.handle_tcp
        server = await asyncio.start_server(handler, *self.settings.listen, backlog=4096,
                                            reuse_address=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        probe = asyncio.create_task(self.probe())
        print(f"listening on {self.settings.listen[0]}:{self.settings.listen[1]}", flush=True)
        async with server:
            await stop.wait()
        probe.cancel()


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s proxy %(message)s")
    proxy = Proxy(Path(args[0]))
    try:
        import uvloop
        uvloop.run(proxy.serve())
    except ImportError:
        asyncio.run(proxy.serve())


if __name__ == "__main__":
    main()
