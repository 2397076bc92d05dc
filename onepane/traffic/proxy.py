"""The built-in data plane: an asyncio (uvloop) HTTP/1.1 and TCP proxy, run as its own process.

    python -m onepane.traffic.proxy CONFIG.json      (SIGHUP re-reads the file)

It runs apart from the control plane so that it keeps serving with its last configuration when
the control plane dies. Idempotent requests that fail on one backend (refused, reset, per-attempt
timeout, 502/503/504) are retried on another, so a location failing costs no client request.
HTTP is handled by http_protocols (asyncio Protocols over httptools, the parser uvicorn uses);
TCP mode, and an HTTP Upgrade (WebSocket), are tunnels of bytes to one backend (tunnel.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import signal
import sys
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .balancer import Backend, Balancer, Pool
from .dataplane import CLIENT_KEEPALIVE_S
from .http_protocols import IDEMPOTENT, STREAM_AFTER_S, Client, UpstreamPool
from .tunnel import TcpClient

log = logging.getLogger("onepane.proxy")
CONNECT_WINDOW = 8  # recent connect times kept per backend
SLOW_CONNECT_FACTOR = 4.0
SLOW_CONNECT_MIN = 0.02  # seconds: scheduling noise on a busy host stays under this
SWEEP_S = 0.02  # how often timeouts and hedges are looked at: their granularity


@dataclass
class Settings:
    listen: tuple[str, int]
    mode: str = "http"
    connect_timeout: float = 0.25
    attempt_timeout: float = 5.0
    attempts: int = 4
    probe_interval: float = 0.25
    hedge_factor: float = 3.0  # hedge after k x the backend's recent p99; 0: never
    hedge_min: float = 0.1  # seconds: never sooner than this


def load(path: Path) -> tuple[Settings, Balancer]:
    cfg = json.loads(path.read_text())
    host, port = cfg["listen"].rsplit(":", 1)
    s = Settings(listen=(host, int(port)), mode=cfg.get("mode", "http"),
                 connect_timeout=cfg.get("connect_timeout", 0.25),
                 attempt_timeout=cfg.get("attempt_timeout", 5.0), attempts=cfg.get("attempts", 4),
                 probe_interval=cfg.get("probe_interval", 0.25),
                 hedge_factor=cfg.get("hedge_factor", 3.0), hedge_min=cfg.get("hedge_min", 0.1))
    pools = [Pool(name=p["name"], weight=int(p.get("weight", 1)),
                  backends=[(b[0], int(b[1])) for b in p["backends"]]) for p in cfg["pools"]]
    return s, Balancer(pools=pools, policy=cfg.get("policy", "ordered"))


class Latency:
    """Each backend's recent answer times, their p99 (recomputed every 32 samples), and from
    it how long a request waits on that backend before a second copy is sent elsewhere."""

    WINDOW, EVERY, ENOUGH = 256, 32, 20

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recent: dict[Backend, deque[float]] = {}
        self.p99: dict[Backend, float] = {}
        self.count: dict[Backend, int] = {}
        self.after: dict[Backend, float] = {}  # backend -> hedge delay, kept with its p99
        self.unknown = self.delay(None)

    def record(self, b: Backend, seconds: float) -> None:
        window = self.recent.get(b)
        if window is None:
            window = self.recent[b] = deque(maxlen=self.WINDOW)
        window.append(seconds)
        n = self.count[b] = self.count.get(b, 0) + 1
        if n % self.EVERY == 0 or n == self.ENOUGH:
            ordered = sorted(window)
            p99 = self.p99[b] = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            self.after[b] = self.delay(p99)

    def hedge_after(self, b: Backend) -> float:
        """Seconds after sending to b that an idempotent request is hedged (inf: never)."""
        return self.after.get(b, self.unknown)

    def delay(self, p99: float | None) -> float:
        s = self.settings
        if s.hedge_factor <= 0:
            return math.inf
        if p99 is None:  # too few answers to know what slow is for this backend
            return min(s.attempt_timeout, max(1.0, s.hedge_min))
        return min(s.attempt_timeout, max(s.hedge_min, s.hedge_factor * p99))

    def retune(self, settings: Settings) -> None:
        """New settings (a reload): the hedge delays follow them."""
        self.settings = settings
        self.unknown = self.delay(None)
        self.after = {b: self.delay(p99) for b, p99 in self.p99.items()}


class Stats:
    """Counters and recent latencies, written next to the configuration twice a second so the
    control plane (and the console's charts) can read them without talking to the proxy.

    Every answer is counted; its latency is kept for 1 in `every` answers, `every` chosen at
    each snapshot so that about SAMPLES_PER_S are kept: at a low rate all of them, under load a
    sample, which is as good for percentiles and cost a fifth of the proxy's throughput when
    every answer was sorted into windows (bench/proxy.py)."""

    SAMPLES_PER_S = 2000

    def __init__(self) -> None:
        self.served = self.retried = self.failed = self.hedged = self.tunnels = 0
        self.by_pool: dict[str, int] = {}
        self.by_backend: dict[Backend, int] = {}  # answers since by_pool was last brought up
        self.window: list[float] = []
        self.every = 1
        self.last_served, self.last_at = 0, time.monotonic()

    def settle(self, pool_of: dict[Backend, str]) -> None:
        """Fold the per-backend counts into the per-location ones (before a reload changes
        which backend is whose, and at each snapshot)."""
        for b, n in self.by_backend.items():
            name = pool_of.get(b, "?")
            self.by_pool[name] = self.by_pool.get(name, 0) + n
        self.by_backend = {}

    def snapshot(self, pool_of: dict[Backend, str]) -> dict[str, object]:
        self.settle(pool_of)
        now = time.monotonic()
        rate = (self.served - self.last_served) / max(now - self.last_at, 1e-3)
        self.last_served, self.last_at = self.served, now
        self.every = max(1, int(rate / self.SAMPLES_PER_S))
        lat = sorted(self.window)
        self.window = []
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3)) if lat \
            else (lambda q: None)
        return {"ts": time.time(), "served": self.served, "retried": self.retried,
                "hedged": self.hedged, "tunnels": self.tunnels,
                "failed": self.failed, "by_location": dict(self.by_pool),
                "p50_ms": pick(0.5), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


class Proxy:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.settings, self.balancer = load(config)
        self.pool = UpstreamPool()
        self.stats = Stats()
        self.latency = Latency(self.settings)
        self.inflight: set[Any] = set()  # exchanges with an attempt sent (the Sweeper's)
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # serve() sets it
        self.connects: dict[Backend, deque[float]] = {}  # backend -> recent connect times
        self.out: list[tuple[asyncio.Transport, bytes]] = []  # sends held to the loop's turn
        self.clients: set[Any] = set()  # HTTP client connections (the idle sweep's)

    def send_later(self, transport: asyncio.Transport, data: bytes) -> None:
        """Send `data` once this turn of the loop has run every callback it has: the sends
        to backends leave together, as HAProxy's do, so each backend wakes for several
        requests at a time instead of one."""
        if not self.out:
            self.loop.call_soon(self._send_out)
        self.out.append((transport, data))

    def _send_out(self) -> None:
        out, self.out = self.out, []
        for transport, data in out:
            if transport.is_closing():
                continue  # aborted this turn: its attempt ends by connection_lost
            try:
                transport.write(data)
            except RuntimeError:  # closed under it: the same, and the others still go
                log.debug("a held send found its connection closed")

    def reload(self) -> None:
        settings, balancer = load(self.config)
        balancer.down = {b: t for b, t in self.balancer.down.items()
                         if any(b in p.backends for p in balancer.pools)}
        serving = balancer.serving_pool()
        self.stats.settle(self.balancer.pool_of)
        self.settings, self.balancer = settings, balancer
        self.latency.retune(settings)
        log.info("configuration reloaded: %s", [p.name for p in balancer.pools])
        # The control plane moved traffic away from these backends (its health checks saw
        # them fail): requests still waiting on them are sent elsewhere now.
        if balancer.policy == "ordered" and serving is not None:
            for b in {u.backend for ex in self.inflight for u in ex.ups} - set(serving.backends):
                self._hedge_waiting(b)

    # ---- hedging ---------------------------------------------------------------------------

    def backend_down(self, b: Backend) -> None:
        """Mark a backend down and re-send the idempotent requests waiting on it at once."""
        self.balancer.mark_down(b)
        self._hedge_waiting(b)

    def _hedge_waiting(self, b: Backend) -> None:
        for exchange in [ex for ex in self.inflight if any(u.backend == b for u in ex.ups)]:
            exchange.hedge()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A task the proxy keeps a reference to until it is done (the loop keeps only a weak
        one)."""
        task = self.loop.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def connected(self, b: Backend, seconds: float) -> None:
        """A connect to b completed: it accepts connections (up again if it was down), and
        its time joins the backend's recent connect times."""
        recent = self.connects.setdefault(b, deque(maxlen=CONNECT_WINDOW))
        recent.append(seconds)
        self.balancer.mark_up(b)

    def slow_connect(self, b: Backend) -> float:
        """How long a connect to b may take before b counts as gone silent: a few times its
        slowest recent connect (a nearby backend answers a SYN in well under a millisecond, a
        far one in its round trip), never under SLOW_CONNECT_MIN nor over the connect
        timeout; half the connect timeout while nothing is known of it."""
        timeout = self.settings.connect_timeout
        recent = self.connects.get(b)
        if not recent:
            return timeout / 2
        return min(timeout, max(SLOW_CONNECT_MIN, SLOW_CONNECT_FACTOR * max(recent)))

    def answered(self, b: Backend, started: float, sent: float) -> None:
        """A request was answered from b: counted, and its latency sampled (Stats). The
        plain answer's path does this inline (Exchange.attempt_done)."""
        stats = self.stats
        stats.served += 1
        stats.by_backend[b] = stats.by_backend.get(b, 0) + 1
        if stats.served % stats.every == 0:
            self.sample(b, started, sent)

    def sample(self, b: Backend, started: float, sent: float) -> None:
        """This answer's latency joins the sample, and its backend's hedge delay."""
        now = self.loop.time()
        if len(self.stats.window) < 20000:
            self.stats.window.append(now - started)
        self.latency.record(b, now - sent)

    # ---- health of backends marked down --------------------------------------------------

    async def report(self) -> None:
        path = self.config.with_suffix(".stats.json")
        while True:
            # Twice a second: the autoscaler reads rates off these writes, so their period is
            # part of its reaction time.
            await asyncio.sleep(0.5)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.stats.snapshot(self.balancer.pool_of)))
            tmp.replace(path)

    async def sweep(self) -> None:
        """Attempt timeouts and hedges, for every exchange in flight, every SWEEP_S: one task
        instead of two timers per request (their creation and cancellation were a tenth of
        the proxy's time per request, bench/proxy.py). An exchange's hedge time is set here
        too, at its first sweep, from its newest attempt's backend: most requests are
        answered before any sweep sees them, and then nothing was computed for them."""
        latency = self.latency
        while True:
            await asyncio.sleep(SWEEP_S)
            now = self.loop.time()
            for ex in list(self.inflight):
                newest = None
                for up in list(ex.ups):
                    if up.exchange is not None and now >= up.deadline:
                        up.timeout()
                    elif up.head_at and up.may_stream and \
                            now - up.head_at >= STREAM_AFTER_S:
                        up.stream()  # its body is still coming: a stream
                    if newest is None or up.sent > newest.sent:
                        newest = up
                if ex.answered or ex.method not in IDEMPOTENT:
                    continue
                if not ex.hedge_at and newest is not None:
                    ex.hedge_at = newest.sent + latency.hedge_after(newest.backend)
                if ex.hedge_at and now >= ex.hedge_at:
                    ex.hedge()

    async def idle(self) -> None:
        """Close client connections kept alive with nothing asked for CLIENT_KEEPALIVE_S or more
        (at most twice that), as HAProxy's `timeout http-keep-alive` does. An ordinary
        client's pool keeps every connection a burst made it open, and httpx's looks at each
        of its idle connections on every request: after a failover's few hundred
        milliseconds of held requests it carried ~60 and spent a third more CPU per request
        for good — the headroom it then lacked at the next fault (bench/failover.py). Seen
        twice with no answer between: idle the whole interval; one counter per answer, no
        timer per request."""
        while True:
            await asyncio.sleep(CLIENT_KEEPALIVE_S)
            for client in list(self.clients):
                if client.busy or client.pending or client.raw or client.transport is None:
                    client.seen = -1
                elif client.served == client.seen:
                    client.transport.close()
                else:
                    client.seen = client.served

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
        loop = self.loop = asyncio.get_running_loop()
        protocol = Client if self.settings.mode == "http" else TcpClient
        server = await loop.create_server(lambda: protocol(self), *self.settings.listen,
                                          backlog=4096, reuse_address=True)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        probe = asyncio.create_task(self.probe())
        report = asyncio.create_task(self.report())
        sweep = asyncio.create_task(self.sweep())
        idle = asyncio.create_task(self.idle())
        print(f"listening on {self.settings.listen[0]}:{self.settings.listen[1]}", flush=True)
        async with server:
            await stop.wait()
        probe.cancel()
        report.cancel()
        sweep.cancel()
        idle.cancel()


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s proxy %(message)s")
    proxy = Proxy(Path(args[0]))
    # Each request allocates a few short-lived objects and frees them by reference counting;
    # the cyclic collector's default threshold (700 allocations) made it run every few dozen
    # requests to find nothing. It still runs, 100x less often; what was made at start is
    # never scanned again.
    gc.freeze()
    gc.set_threshold(70_000, 10, 10)
    try:
        import uvloop
        uvloop.run(proxy.serve())
    except ImportError:
        asyncio.run(proxy.serve())


if __name__ == "__main__":
    main()
