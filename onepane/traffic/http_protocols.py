"""The built-in proxy's HTTP path as asyncio Protocols: callbacks, no task or stream per request.

One request at a time per client connection: the client's request is framed (httptools), sent
to a backend over a pooled keep-alive upstream connection, and the response written back. A
message with nothing in it for this hop only (no Connection, Transfer-Encoding, Upgrade, ...
header) is passed on as the bytes it came as; only the others are parsed whole and rebuilt
(FullMessage): the parser calls back twice per message instead of once per header, and nothing
is copied (bench/proxy.py). Failures (refused, reset, closed early, per-attempt timeout,
502/503/504) are retried on another backend for idempotent requests, and the failing backend
is marked down at once.

A response whose head has come but whose body has not all come with it (a stream: server-sent
events, a long chunked answer, a download) is committed then: it will not be retried, so its
head and every later piece go to the client as they come, with the client's reading pacing the
backend's, and TCP keepalive on the backend's connection closes the client's within seconds if
the backend goes silent under the stream (the same bound as a tunnel's).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from typing import TYPE_CHECKING, Any

import httptools

from .balancer import Backend
from .tunnel import attach, connect_tunnel, keepalive

if TYPE_CHECKING:
    from .proxy import Proxy

IDEMPOTENT = {b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"}
RETRY_STATUS = {502, 503, 504}
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
              b"upgrade", b"trailer", b"content-length"}
# A header that makes a message unfit to pass on as it came (Content-Length is rewritten only
# when the message is rebuilt anyway)
FOR_THIS_HOP = re.compile(rb"\r\n(" + b"|".join(re.escape(n) for n in sorted(HOP_BY_HOP - {
    b"content-length"})) + rb")[ \t]*:", re.IGNORECASE)
# The headers that decide whether a response passes on as it came: it does when the only one
# found is its Content-Length (one search instead of one per question)
DECIDING = re.compile(rb"\r\n(" + b"|".join(re.escape(n) for n in sorted(HOP_BY_HOP)) +
                      rb")[ \t]*:", re.IGNORECASE)
FRAMED = re.compile(rb"\r\n(content-length[ \t]*:|transfer-encoding[ \t]*:[^\r]*chunked)",
                    re.IGNORECASE)
EVENT_STREAM = re.compile(rb"\r\ncontent-type[ \t]*:[ \t]*text/event-stream", re.IGNORECASE)
MEMO_LIMIT = 4096  # heads remembered per kind before the memo starts again
MEMO_KEY_MAX = 2048  # bytes: a longer head (or request) is never remembered nor looked up
STREAM_AFTER_S = 0.25  # a body still coming this long after its head: a stream (Sweeper)
STREAM_AFTER_BYTES = 256 * 1024  # or this much of it buffered
REFUSED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Message:
    """Where a message ends, and whether its connection may carry another: httptools calls
    back at its end only, and keep-alive is read then, while llhttp still knows it (right
    after, a `Connection: close` request reads as keep-alive). Messages are counted as they
    begin, so a read that ends one and starts the next (pipelining) counts two. A request's
    (`request=True`: the client's parser) or a response's (an upstream's)."""

    __slots__ = ("done", "keep_alive", "messages", "parser")

    def __init__(self, request: bool = False) -> None:
        self.parser: Any = (httptools.HttpRequestParser if request
                            else httptools.HttpResponseParser)(self)
        self.keep_alive = True
        self.reset()

    def reset(self) -> None:
        """Reuse for the next message: the parser keeps calling this same object."""
        self.done = False
        self.messages = 0  # messages begun since the reset (pipelining makes it more)

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()


class HeadMessage(Message):
    """The answer to a HEAD request ends with its head (llhttp would wait for the body its
    Content-Length announces): a parser of its own, used once."""

    __slots__ = ()

    def on_headers_complete(self) -> None:
        self.on_message_complete()


class FullMessage:
    """A message parsed whole: for the ones that must be rebuilt."""

    __slots__ = ("body", "head_only", "headers", "reason", "url")

    def __init__(self, head_only: bool = False) -> None:
        self.url = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_only = head_only

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


def parse_whole(raw: bytes, request: bool, head_only: bool = False) -> FullMessage:
    msg = FullMessage(head_only)
    parser = httptools.HttpRequestParser(msg) if request else httptools.HttpResponseParser(msg)
    with contextlib.suppress(httptools.HttpParserError):  # framed once already
        parser.feed_data(raw)
    return msg


class Heads:
    """What the proxy found in a message's head, remembered per head: whether it may pass on
    as it came, and, for the plainest messages, everything httptools said of it.

    Clients and backends send the same heads over and over (one client's GETs differ in
    nothing; a backend's answers only in their Date, once a second). llhttp frames a message
    from its head alone (and, for a response, whether the request was a HEAD): so a request
    that came as one read and was one bodiless keep-alive message with nothing for this hop,
    seen again byte for byte, is that same message again, and need not be parsed; likewise a
    response that came as one read, head and Content-Length body. Hashing a head costs a
    fraction of the header search and the parse it replaces, which were a fifth of the
    proxy's Python time per request (bench/proxy.py). Bounded: past MEMO_LIMIT heads of a
    kind it forgets them all, so a peer that sends a new head each time costs what it did
    before, and no more than MEMO_LIMIT x MEMO_KEY_MAX bytes per memo."""

    __slots__ = ("plain_requests", "plain_responses", "requests", "responses")

    def __init__(self) -> None:
        self.requests: dict[bytes, bool] = {}
        self.responses: dict[bytes, bool] = {}
        self.plain_requests: dict[bytes, bytes] = {}  # whole request -> its method
        self.plain_responses: dict[bytes, tuple[int, int]] = {}  # head -> status, body length

    def request_passes(self, head: bytes) -> bool:
        """No header for this hop only (Connection, Transfer-Encoding, Upgrade, ...)."""
        known = self.requests.get(head)
        if known is None:
            known = FOR_THIS_HOP.search(head) is None
            remember(self.requests, head, known)
        return known

    def response_passes(self, head: bytes) -> bool:
        """Its Content-Length is the only header of those for this hop: its length says
        where it ends and nothing in it is to be rewritten."""
        known = self.responses.get(head)
        if known is None:
            found = DECIDING.findall(head)
            known = len(found) == 1 and found[0].lower() == b"content-length"
            remember(self.responses, head, known)
        return known


def remember(memo: dict[bytes, Any], key: bytes, value: Any) -> None:
    if len(key) > MEMO_KEY_MAX:  # at most MEMO_LIMIT x MEMO_KEY_MAX bytes per memo
        return
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value


HEADS = Heads()


def head_of(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw[:end + 2] if end >= 0 else raw


class Upstream(asyncio.Protocol):
    """A keep-alive connection to one backend, carrying one exchange at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.exchange: Exchange | None = None  # the exchange whose attempt is under way
        self.sent = 0.0  # loop time the attempt was sent
        self.reused = False  # the attempt went over a pooled connection
        self.lean = self.msg = Message()  # msg: the current exchange's (lean, or a HEAD's)
        self.resp: Message | None = None  # msg while an exchange is under way
        self.parser = self.msg.parser
        self.got_any = False
        self.deadline = 0.0  # loop time after which the attempt times out (Sweeper)
        self.raw: list[bytes] = []  # the response's bytes as they came
        self.may_stream = False  # the exchange is asked once the response is seen a stream
        self.stream_to: Client | None = None  # committed: the rest goes straight there
        self.head_at = 0.0  # loop time a framed head came while its body had not (0: not yet)
        self.buffered = 0
        self.seen_head = False
        self.stream_seen = False  # the four fields above changed since the last send
        self.plain = False  # the response was one whose head was parsed before (Heads)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, exchange: Exchange, reused: bool) -> None:
        """Send the exchange's request as its next attempt (the exchange counts it in
        flight: the Sweeper's)."""
        # The hot path (bench/proxy.py): every line here runs per request, so what usually
        # has not changed is not reset, and Message.reset is inlined.
        proxy = exchange.proxy
        sent = proxy.loop.time()
        if not exchange.ups:
            proxy.inflight.add(exchange)
        exchange.ups.add(self)
        self.exchange, self.got_any = exchange, False
        self.sent, self.reused = sent, reused
        self.deadline = sent + proxy.settings.attempt_timeout
        msg: Message
        if exchange.method == b"HEAD":
            msg = self.msg = HeadMessage()
        else:
            msg = self.msg = self.lean
            msg.done, msg.messages = False, 0
        self.resp, self.parser = msg, msg.parser
        self.raw = []
        self.may_stream, self.plain = True, False
        if self.stream_seen:
            self.stream_to, self.head_at, self.buffered, self.seen_head = None, 0.0, 0, False
            self.stream_seen = False
        assert self.transport is not None
        proxy.send_later(self.transport, exchange.raw)

    def data_received(self, data: bytes) -> None:
        if self.resp is None:
            return
        self.got_any = True
        if not self.raw and self.resp is self.lean:  # the first read of a response
            end = data.find(b"\r\n\r\n")
            known = HEADS.plain_responses.get(data[:end + 2]) if end > 0 else None
            if known is not None and len(data) == end + 4 + known[1]:
                # a head parsed before, and the whole response: not parsed again
                self.raw.append(data)
                msg = self.lean
                msg.done, msg.messages, msg.keep_alive = True, 1, True
                self.plain = True
                exchange = self.exchange
                self.exchange = self.resp = None
                if exchange is not None:
                    exchange.attempt_done(self, known[0], True, None, True)
                return
        if self.stream_to is not None:
            self.stream_to.write(data)
        else:
            self.raw.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(0, f"bad response: {exc}")
            return
        if not self.resp.done and self.may_stream:
            self._maybe_stream(len(data))
        if self.resp is not None and self.resp.done:  # _finish(status, None), inlined
            exchange = self.exchange
            self.exchange = self.resp = None
            if exchange is not None:
                exchange.attempt_done(self, self.parser.get_status_code(), True, None, True)

    def _maybe_stream(self, more: int) -> None:
        """Stream at once what says it is an event stream or has buffered a lot; note when the
        head came otherwise (the Sweeper streams it after STREAM_AFTER_S); nothing while its
        head has not all come."""
        self.stream_seen = True
        self.buffered += more
        if not self.seen_head:
            raw = self.raw[0] if len(self.raw) == 1 else b"".join(self.raw)
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.seen_head = True
            if EVENT_STREAM.search(raw, 0, end):
                self.stream()
                return
            if FRAMED.search(raw, 0, end):  # the Sweeper streams it if it stays slow
                self.head_at = asyncio.get_running_loop().time()
        if self.buffered > STREAM_AFTER_BYTES:
            self.stream()

    def stream(self) -> None:
        """The response is a stream: ask the exchange whether to commit (it does unless it
        would retry this answer); committed, what came so far goes to the client now and the
        rest as it comes, with no attempt deadline."""
        exchange = self.exchange if self.may_stream else None
        self.may_stream, self.stream_seen = False, True
        client = exchange.commit(self) if exchange is not None else None
        if client is None:
            return
        self.stream_to, self.deadline = client, float("inf")
        client.streaming = self
        raw, self.raw = self.raw, []
        client.write(b"".join(raw))
        self.head_at = 0.0
        if self.transport is not None:
            keepalive(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is None:  # an idle pooled connection: nothing waits on it
            return
        raw = b"".join(self.raw)
        if exc is None and self.resp is not None and (self.seen_head or b"\r\n\r\n" in raw) \
                and _close_delimited(parse_whole(head_of(raw), False).headers):
            # HTTP/1.0 style: no length, no chunks, the body ends where the connection does
            # (busybox httpd's CGI answers, for one).
            self._finish(self.parser.get_status_code(), None)
        else:
            self._finish(0, f"closed by backend{f': {exc}' if exc else ''}")

    def timeout(self) -> None:
        self._finish(0, "timeout")
        if self.transport:
            self.transport.abort()

    def _finish(self, status: int, error: str | None) -> None:
        exchange, resp, got_any = self.exchange, self.resp, self.got_any
        self.exchange = self.resp = None
        if exchange is not None:
            exchange.attempt_done(self, status, resp is not None and error is None, error,
                                  got_any)


class Client(asyncio.Protocol):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.req = Message(request=True)
        self.parser: httptools.HttpRequestParser = self.req.parser
        self.busy = False
        self.pending = b""
        self.raw: list[bytes] = []  # the request's bytes as they came
        self.streaming: Upstream | None = None  # a response being streamed to this client
        self.served = 0  # exchanges answered: the idle sweep's sign of life (Proxy.idle)
        self.seen = -1  # `served` at the idle sweep before

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.proxy.clients.discard(self)
        up, self.streaming = self.streaming, None
        if up is not None and up.transport is not None:
            up.transport.abort()  # the client left a stream: stop reading it

    def write(self, data: bytes) -> None:
        if self.transport is not None and data:
            self.transport.write(data)

    def pause_writing(self) -> None:
        """The client reads slower than a streamed response comes: hold the backend."""
        if self.streaming is not None and self.streaming.transport is not None:
            self.streaming.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.streaming is not None and self.streaming.transport is not None:
            self.streaming.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.busy:  # pipelined: parse it once the current exchange is answered
            self.pending += data
            return
        if not self.raw and len(data) <= MEMO_KEY_MAX:  # the first read of a request
            method = HEADS.plain_requests.get(data)
            if method is not None:  # a request parsed before, whole: not parsed again
                self.busy = True
                Exchange(self, method, data, True)
                return
        self.raw.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:  # WebSocket and the like: a tunnel
            self._tunnel(len(data) - int(upgrade.args[0]))
            return
        except httptools.HttpParserError:
            self._reply(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", keep=False)
            return
        if self.req.done:
            self.busy = True
            chunks = self.raw
            one_read = len(chunks) == 1 and self.req.messages == 1
            raw = data if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            method, keep = self.parser.get_method(), self.req.keep_alive
            if self.req.messages > 1:
                raw, method, keep = self._first_of_pipelined(raw)
            end = raw.find(b"\r\n\r\n")
            if not HEADS.request_passes(raw[:end + 2]):
                raw = rebuild_request(method, parse_whole(raw, True))
            elif one_read and end == len(raw) - 4 and keep:
                remember(HEADS.plain_requests, raw, method)  # bodiless: plain next time
            Exchange(self, method, raw, keep)

    def _first_of_pipelined(self, raw: bytes) -> tuple[bytes, bytes, bool]:
        """Several requests came in one read (pipelining): the first is served now, the rest
        once it is answered, read then by a parser started afresh (this one has read past
        them). The first request's bytes, method and keep-alive."""
        cut = first_message_end(raw)
        self.pending = raw[cut:] + self.pending
        self.req = Message(request=True)
        self.parser = self.req.parser
        first = Message(request=True)
        first.parser.feed_data(raw[:cut])
        return raw[:cut], first.parser.get_method(), first.keep_alive

    def _tunnel(self, after: int) -> None:
        """The request asked to switch protocols: from here on bytes, both ways, between the
        client and one backend (tunnel.py); `after` bytes of the last read already are."""
        raw, self.raw = b"".join(self.raw), []
        self.busy = True
        if self.transport is None:
            return
        split = len(raw) - after
        near = attach(self.transport, raw[split:])
        self.proxy.spawn(connect_tunnel(self.proxy, near, raw[:split], REFUSED))

    def _reply(self, data: bytes, keep: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not keep:
            self.transport.close()
            return
        self.busy = False
        self.served += 1
        req = self.req
        req.done, req.messages = False, 0  # Message.reset, inlined (per request)
        if self.pending:
            data, self.pending = self.pending, b""
            self.data_received(data)


def first_message_end(raw: bytes) -> int:
    """Where the first of several requests in raw ends. httptools says that a message ended,
    not where: the shortest prefix a fresh parser reads as a whole message, found by bisection
    (only pipelined reads come here)."""
    lo, hi = 1, len(raw)
    while lo < hi:
        mid = (lo + hi) // 2
        probe = Message(request=True)
        with contextlib.suppress(httptools.HttpParserError):  # an upgrade: ends there too
            probe.parser.feed_data(raw[:mid])
        if probe.done:
            hi = mid
        else:
            lo = mid + 1
    return lo


def rebuild_request(method: bytes, req: FullMessage) -> bytes:
    body = b"".join(req.body)
    head = [method, b" ", req.url, b" HTTP/1.1\r\n"]
    for name, value in req.headers:
        if name.lower() not in HOP_BY_HOP:
            head += [name, b": ", value, b"\r\n"]
    head += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n"]
    return b"".join(head) + body


class Exchange:
    """One client request and its attempts at backends."""

    __slots__ = ("answered", "client", "hedge_at", "inflight", "keep", "method", "proxy", "raw",
                 "started", "tried", "ups")

    def __init__(self, client: Client, method: bytes, raw: bytes, keep: bool) -> None:
        self.client, self.method, self.keep = client, method, keep
        proxy = self.proxy = client.proxy
        self.started = proxy.loop.time()
        self.raw = raw
        self.tried: set[Backend] = set()
        self.answered = False
        self.inflight = 0  # attempts under way (two while a hedge races the first)
        self.ups: set[Upstream] = set()
        self.hedge_at = 0.0  # loop time to hedge at (0: the Sweeper sets it; inf: never)
        self.attempt("no backend available")

    def hedge(self) -> None:
        """A second copy of an idempotent request elsewhere, racing the first: when it has been
        slower than its backend's recent p99 x k, or at once when that backend is marked down
        (a location that went silent answers nothing; waiting for the attempt timeout would
        hold the request for seconds). The first answer wins."""
        proxy = self.proxy
        if self.answered or self.method not in IDEMPOTENT \
                or len(self.tried) >= proxy.settings.attempts \
                or proxy.balancer.choose(self.tried) is None:
            self.hedge_at = math.inf  # nowhere to send a copy: the Sweeper stops asking
            return
        self.hedge_at = 0.0  # the Sweeper sets the next from this copy's backend
        proxy.stats.hedged += 1
        self.attempt("hedged")

    def attempt(self, last: str) -> None:
        if self.answered:
            return
        proxy = self.proxy
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
        conns = proxy.pool.idle.get(backend)  # a pooled connection still open, if any
        while conns:
            up = conns.pop()
            if not up.closed:
                up.send(self, reused=True)
                return
        asyncio.get_running_loop().create_task(self.connect(backend))

    async def connect(self, backend: Backend) -> None:
        proxy = self.proxy
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
        up.send(self, reused=False)

    def attempt_done(self, up: Upstream, status: int, answered: bool, error: str | None,
                     got_any: bool) -> None:
        """An attempt ended: answered (a whole response, or a stream's end) or not."""
        self.ups.discard(up)
        self.inflight -= 1
        if up.stream_to is not None:
            self._streamed(up, answered)
            return
        if self.answered:
            if up.transport is not None:
                up.transport.close()
            return
        if not answered:
            self._failed(up, error, got_any)
            return
        proxy = self.proxy
        b = up.backend
        raw = up.raw  # before the connection goes back to the pool
        head_only = self.method == b"HEAD"
        if up.msg.keep_alive and not head_only and not up.closed:
            idle = proxy.pool.idle.get(b)  # back to the pool (UpstreamPool.give, inlined)
            if idle is None:
                idle = proxy.pool.idle[b] = []
            idle.append(up)
        elif up.transport:
            up.transport.close()
        if status in RETRY_STATUS and self.method in IDEMPOTENT and \
                len(self.tried) < proxy.settings.attempts:
            proxy.stats.retried += 1
            self.attempt(f"{b[0]}:{b[1]} answered {status}")
            return
        if self.ups:
            self._done()
        else:  # _done() with no other attempt to stop, inlined
            self.answered = True
            proxy.inflight.discard(self)
        stats = proxy.stats  # Proxy.answered, inlined (per request)
        stats.served += 1
        stats.by_backend[b] = stats.by_backend.get(b, 0) + 1
        if stats.served % stats.every == 0:
            proxy.sample(b, self.started, up.sent)
        # As it came when its length says where it ends and nothing else in its head is for
        # this hop only (the usual case); else rebuilt.
        if up.plain:
            self.client._reply(raw[0], self.keep)
            return
        whole = raw[0] if len(raw) == 1 else b"".join(raw)
        end = whole.find(b"\r\n\r\n")
        if head_only or up.msg.messages != 1 or not HEADS.response_passes(whole[:end + 2]):
            whole = render(status, parse_whole(whole, False, head_only))
        elif len(raw) == 1 and up.msg.keep_alive:  # one read, one message: plain next time
            remember(HEADS.plain_responses, whole[:end + 2], (status, len(whole) - end - 4))
        self.client._reply(whole, self.keep)

    def _failed(self, up: Upstream, error: str | None, got_any: bool) -> None:
        """An attempt got no answer: try again (elsewhere unless only the pooled connection
        had gone stale), or, for a request that may not be repeated, answer 502."""
        proxy = self.proxy
        b = up.backend
        if up.reused and not got_any and error != "timeout":
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

    def commit(self, up: Upstream) -> Client | None:
        """A head came without its whole body: serve the client from this attempt as it comes
        (the client to write to), unless the answer is one to retry elsewhere or another
        attempt already answered (None: keep it whole)."""
        status = up.parser.get_status_code()
        if self.answered or self.client.transport is None or (
                status in RETRY_STATUS and self.method in IDEMPOTENT
                and len(self.tried) < self.proxy.settings.attempts):
            return None
        self.ups.discard(up)  # it is the answer: _done must not abort it
        self._done()
        self.proxy.answered(up.backend, self.started, up.sent)
        return self.client

    def _done(self) -> None:
        """The request is answered (or given up): stop the hedge and the attempts that lost."""
        self.answered = True
        self.hedge_at = 0.0
        self.proxy.inflight.discard(self)
        for other in list(self.ups):
            if other.transport is not None:
                other.transport.abort()  # its late answer must not reach the pool

    def _streamed(self, up: Upstream, answered: bool) -> None:
        """A streamed response ended: whole (the connections kept if both sides may), or cut
        off (the client's connection closed, so it sees a truncated answer, never a hang)."""
        client, up.stream_to = self.client, None
        client.streaming = None
        if up.transport is not None:
            up.transport.resume_reading()  # a slow client may have paused it
        keep = answered and up.msg.keep_alive and not up.closed
        if keep:
            self.proxy.pool.give(up.backend, up)
        elif up.transport is not None:
            up.transport.close()
        client._reply(b"", keep and self.keep)


def render(status: int, resp: FullMessage) -> bytes:
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
    """Idle keep-alive connections per backend, newest last. Taken from (Exchange.attempt)
    and given back (Exchange.attempt_done) inline on the per-request path."""

    def __init__(self) -> None:
        self.idle: dict[Backend, list[Upstream]] = {}

    def give(self, b: Backend, up: Upstream) -> None:
        self.idle.setdefault(b, []).append(up)

    def drop(self, b: Backend) -> None:
        for up in self.idle.pop(b, []):
            if up.transport:
                up.transport.close()


def _close_delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    names = {k.lower(): v.lower() for k, v in headers}
    return b"content-length" not in names and b"chunked" not in names.get(b"transfer-encoding", b"")
