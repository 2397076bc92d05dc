"""The built-in proxy's HTTP path as asyncio Protocols: callbacks, no task or stream per request.

One request at a time per client connection: the client's request is parsed (httptools), sent
to a backend over a pooled keep-alive upstream connection, and the parsed response written
back. Failures (refused, reset, closed early, per-attempt timeout, 502/503/504) are retried on
another backend for idempotent requests, and the failing backend is marked down at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools

from .balancer import Backend

if TYPE_CHECKING:
    from .proxy import Proxy

IDEMPOTENT = {b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"}
RETRY_STATUS = {502, 503, 504}
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
              b"upgrade", b"trailer", b"content-length"}
Done = Callable[["Upstream", int, "Message | None", "str | None", bool], None]


class Message:
    """A parsed request or response (httptools callbacks land here)."""

    __slots__ = ("body", "done", "head_only", "headers", "headers_done", "reason", "url")

    def __init__(self, head_only: bool = False) -> None:
        self.reset(head_only)

    def reset(self, head_only: bool = False) -> None:
        """Reuse for the next message: the parser keeps calling this same object."""
        self.url = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = False
        self.headers_done = False
        self.head_only = head_only

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.head_only:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class Upstream(asyncio.Protocol):
    """A keep-alive connection to one backend, carrying one exchange at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.done: Done | None = None
        self.msg = Message()
        self.resp: Message | None = None
        self.parser = httptools.HttpResponseParser(self.msg)
        self.got_any = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, raw: bytes, head_only: bool, timeout: float, done: Done) -> None:
        self.done, self.got_any = done, False
        self.msg.reset(head_only)
        self.resp = self.msg
        self.timer = asyncio.get_running_loop().call_later(timeout, self._timeout)
        assert self.transport is not None
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        if self.resp is None:
            return
        self.got_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(0, f"bad response: {exc}")
            return
        if self.resp.done:
            status = self.parser.get_status_code()
            if self.resp.head_only:  # llhttp still waits for a body: start afresh next time
                self.parser = httptools.HttpResponseParser(self.msg)
            self._finish(status, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and exc is None and self.resp is not None \
                and self.resp.headers_done and _close_delimited(self.resp.headers):
            # HTTP/1.0 style: no length, no chunks, the body ends where the connection does
            # (busybox httpd's CGI answers, for one).
            self._finish(self.parser.get_status_code(), None)
        elif self.done is not None:
            self._finish(0, f"closed by backend{f': {exc}' if exc else ''}")

    def _timeout(self) -> None:
        self._finish(0, "timeout")
        if self.transport:
            self.transport.abort()

    def _finish(self, status: int, error: str | None) -> None:
        done, resp, got_any = self.done, self.resp, self.got_any
        self.done = self.resp = None
        if self.timer:
            self.timer.cancel()
            self.timer = None
        if done is not None:
            done(self, status, resp if error is None else None, error, got_any)


class Client(asyncio.Protocol):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.req = Message()
        self.parser = httptools.HttpRequestParser(self.req)
        self.busy = False
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.busy:  # pipelined: parse it once the current exchange is answered
            self.pending += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", keep=False)
            return
        if self.req.done:
            self.busy = True
            Exchange(self, self.parser.get_method(), self.req, self.parser.should_keep_alive())

    def _reply(self, data: bytes, keep: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not keep:
            self.transport.close()
            return
        self.busy = False
        self.req.reset()
        if self.pending:
            data, self.pending = self.pending, b""
            self.data_received(data)


class Exchange:
    """One client request and its attempts at backends."""

    __slots__ = ("answered", "client", "hedge_timer", "inflight", "keep", "method", "raw",
                 "started", "tried", "ups")

    def __init__(self, client: Client, method: bytes, req: Message, keep: bool) -> None:
        self.client, self.method, self.keep = client, method, keep
        self.started = asyncio.get_running_loop().time()
        body = b"".join(req.body)
        head = [method, b" ", req.url, b" HTTP/1.1\r\n"]
        for name, value in req.headers:
            if name.lower() not in HOP_BY_HOP:
                head += [name, b": ", value, b"\r\n"]
        head += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n"]
        self.raw = b"".join(head) + body
        self.tried: set[Backend] = set()
        self.answered = False
        self.inflight = 0  # attempts under way (two while a hedge races the first)
        self.ups: set[Upstream] = set()
        self.hedge_timer: asyncio.TimerHandle | None = None
        self.attempt("no backend available")

    def hedge(self) -> None:
        """A second copy of an idempotent request elsewhere, racing the first: when it has been
        slower than its backend's recent p99 x k, or at once when that backend is marked down
        (a location that went silent answers nothing; waiting for the attempt timeout would
        hold the request for seconds). The first answer wins."""
        self.hedge_timer = None
        proxy = self.client.proxy
        if self.answered or self.method not in IDEMPOTENT \
                or len(self.tried) >= proxy.settings.attempts \
                or proxy.balancer.choose(self.tried) is None:
            return
        proxy.stats.hedged += 1
        self.attempt("hedged")

    def attempt(self, last: str) -> None:
        if self.answered:
            return
        proxy = self.client.proxy
        choice = proxy.balancer.choose(self.tried) if len(self.tried) < proxy.settings.attempts \
            else None
        if choice is None and self.inflight:
            return  # another attempt is still under way: its answer decides
        if choice is None:
            self._done()
            proxy.stats.failed += 1
            msg = f"onepane: no backend could serve the request ({last})\n".encode()
            self.client._reply(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                               b"content-length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg,
                               self.keep)
            return
        backend = choice[1]
        self.tried.add(backend)
        self.inflight += 1
        up = proxy.pool.take(backend)
        if up is not None:
            self.send(up, reused=True)
        else:
            asyncio.get_running_loop().create_task(self.connect(backend))

    async def connect(self, backend: Backend) -> None:
        proxy = self.client.proxy
        loop = asyncio.get_running_loop()
        begun = loop.time()
        abandoned = False

        def slow() -> None:
            # A connect far slower than this backend's usual is a backend gone silent: every
            # request meanwhile would queue behind its connect timeout (75 requests at 300/s
            # for 0.25 s; an ordinary client's pool collapsed under that queue, issue 27).
            # The request was not sent yet, so it may move on at once, whatever its method;
            # the backend is marked down (the connect, still under way, brings it back if it
            # completes after all).
            nonlocal abandoned
            if self.answered:
                return
            proxy.backend_down(backend)
            if proxy.balancer.choose(self.tried) is None:
                return  # nowhere else to go: this connect decides
            abandoned = True
            proxy.stats.retried += 1
            self.attempt(f"{backend[0]}:{backend[1]} connect: slower than "
                         f"{proxy.slow_connect(backend) * 1000:.0f} ms")
        timer = loop.call_later(proxy.slow_connect(backend), slow)
        try:
            _, up = await asyncio.wait_for(
                loop.create_connection(lambda: Upstream(backend), *backend),
                proxy.settings.connect_timeout)
        except (TimeoutError, OSError) as exc:
            timer.cancel()
            self.inflight -= 1
            proxy.backend_down(backend)
            proxy.pool.drop(backend)
            if self.answered or abandoned:
                if not self.answered and not self.inflight:  # what replaced it gave up
                    self.attempt(f"{backend[0]}:{backend[1]} connect: {exc or 'timeout'}")
                return
            proxy.stats.retried += 1
            spent = loop.time() - self.started
            if isinstance(exc, TimeoutError) and proxy.balancer.choose(self.tried) is None \
                    and spent + proxy.settings.connect_timeout < proxy.settings.attempt_timeout:
                # The only backend left did not answer a SYN in time (a VM's live move pauses
                # it and switches its route; the kernel would resend only after a second):
                # fresh connection attempts, within the request's attempt timeout, rather
                # than an error at once.
                self.tried.discard(backend)
            self.attempt(f"{backend[0]}:{backend[1]} connect: {exc or 'timeout'}")
            return
        timer.cancel()
        proxy.connected(backend, loop.time() - begun)
        if self.answered or (abandoned and self.inflight > 1):
            # served elsewhere meanwhile, or an attempt elsewhere is under way and decides:
            # the connection is pooled for the requests to come
            self.inflight -= 1
            proxy.pool.give(backend, up)
            return
        self.send(up, reused=False)

    def send(self, up: Upstream, reused: bool) -> None:
        head_only = self.method == b"HEAD"
        proxy = self.client.proxy
        sent = asyncio.get_running_loop().time()

        def done(up: Upstream, status: int, resp: Message | None, error: str | None,
                 got_any: bool) -> None:
            self.ups.discard(up)
            proxy.watching(up.backend, self, False)
            self.inflight -= 1
            if resp is not None:
                proxy.latency.record(up.backend, asyncio.get_running_loop().time() - sent)
            self.finished(up, status, resp, error, got_any, reused)
        self.ups.add(up)
        proxy.watching(up.backend, self, True)
        up.send(self.raw, head_only, proxy.settings.attempt_timeout, done)
        if self.method in IDEMPOTENT and self.hedge_timer is None:
            delay = proxy.hedge_delay(up.backend)
            if delay is not None:
                self.hedge_timer = asyncio.get_running_loop().call_later(delay, self.hedge)

    def _done(self) -> None:
        """The request is answered (or given up): stop the hedge and the attempts that lost."""
        self.answered = True
        if self.hedge_timer is not None:
            self.hedge_timer.cancel()
            self.hedge_timer = None
        for other in list(self.ups):
            if other.transport is not None:
                other.transport.abort()  # its late answer must not reach the pool

    def finished(self, up: Upstream, status: int, resp: Message | None, error: str | None,
                 got_any: bool, reused: bool) -> None:
        proxy = self.client.proxy
        b = up.backend
        if self.answered:
            if up.transport is not None:
                up.transport.close()
            return
        if resp is None:
            if reused and not got_any and error != "timeout":
                self.tried.discard(b)  # a stale keep-alive connection: not the backend's fault
                self.attempt(error or "")
                return
            proxy.backend_down(b)
            proxy.pool.drop(b)
            if self.method not in IDEMPOTENT:
                self._done()
                self.client._reply(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n",
                                   self.keep)
                return
            proxy.stats.retried += 1
            self.attempt(f"{b[0]}:{b[1]} {error}")
            return
        if not any(n.lower() == b"connection" and b"close" in v.lower() for n, v in resp.headers) \
                and not resp.head_only and not up.closed:
            proxy.pool.give(b, up)
        elif up.transport:
            up.transport.close()
        if status in RETRY_STATUS and self.method in IDEMPOTENT and \
                len(self.tried) < proxy.settings.attempts:
            proxy.stats.retried += 1
            self.attempt(f"{b[0]}:{b[1]} answered {status}")
            return
        self._done()
        proxy.stats.record(asyncio.get_running_loop().time() - self.started, choice_pool(proxy, b))
        self.client._reply(render(status, resp), self.keep)


def choice_pool(proxy: Proxy, b: Backend) -> str:
    for pool in proxy.balancer.pools:
        if b in pool.backends:
            return pool.name
    return "?"


def render(status: int, resp: Message) -> bytes:
    body = b"" if resp.head_only else b"".join(resp.body)
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", resp.reason or b"OK", b"\r\n"]
    for name, value in resp.headers:
        low = name.lower()
        if low in HOP_BY_HOP and not (resp.head_only and low == b"content-length"):
            continue
        out += [name, b": ", value, b"\r\n"]
    if not resp.head_only:
        out += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
    out.append(b"\r\n")
    out.append(body)
    return b"".join(out)


class UpstreamPool:
    def __init__(self) -> None:
        self.idle: dict[Backend, list[Upstream]] = {}

    def take(self, b: Backend) -> Upstream | None:
        conns = self.idle.get(b)
        while conns:
            up = conns.pop()
            if not up.closed:
                return up
        return None

    def give(self, b: Backend, up: Upstream) -> None:
        self.idle.setdefault(b, []).append(up)

    def drop(self, b: Backend) -> None:
        for up in self.idle.pop(b, []):
            if up.transport:
                up.transport.close()


def _close_delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    names = {k.lower(): v.lower() for k, v in headers}
    return b"content-length" not in names and b"chunked" not in names.get(b"transfer-encoding", b"")
