"""A steady client load for failure drills: who answered, when, and what failed.

Used by the failover tests and bench/failover.py, and handy by hand: run it against a
deployment, cut a location, and read the switch off `switch()`.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Sample:
    start: float
    end: float
    ok: bool
    where: str  # the location that answered, or the error


@dataclass
class Switch:
    failed: int
    last_failure_s: float | None  # from the cut to the end of the last failed request
    first_new_s: float | None  # from the cut to the first answer from another location
    p99_ms: float  # latency of the requests started in the window after the cut
    requests: int
    worst_ms: float = 0.0  # the slowest request that was in flight at the cut or started after
    p50_elevated_s: float = 0.0  # how long p50 (per 250 ms) stayed above 2x its value before


def served_by_location(r: httpx.Response) -> str:
    """Who answered, as httpecho says it ({"location": ...}); ValueError/KeyError if not."""
    return str(r.json()["location"])


@dataclass
class Load:
    url: str
    clients: int = 1
    timeout: float = 10.0
    # a 200's answer -> who served it; raising ValueError or KeyError makes it a failure
    read: Callable[[httpx.Response], str] = served_by_location
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for _ in range(self.clients):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = http.get(self.url)
                    ok = r.status_code == 200
                    # a failure says who said what: the data plane's 503 names its last try
                    where = self.read(r) if ok else f"HTTP {r.status_code} {r.text.strip()[:120]}"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    ok, where = False, repr(exc)
                with self._lock:
                    self.samples.append(Sample(t0, time.monotonic(), ok, where))
                time.sleep(0.002)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def failures(self) -> list[Sample]:
        return [s for s in self.snapshot() if not s.ok]

    def served_by(self, location: str, since: float, last: int = 5) -> bool:
        recent = [s for s in self.snapshot() if s.start > since]
        return len(recent) >= last and all(s.where == location for s in recent[-last:])

    def switch(self, cut_at: float, old: str, window: float = 2.0) -> Switch:
        after = [s for s in self.snapshot() if s.end > cut_at]
        failed = [s for s in after if not s.ok]
        new = [s for s in after if s.ok and s.where != old]
        lat = sorted((s.end - s.start) * 1000 for s in after if s.start < cut_at + window)
        p99 = lat[min(len(lat) - 1, int(0.99 * (len(lat) - 1)))] if lat else 0.0
        return Switch(failed=len(failed),
                      last_failure_s=max(s.end for s in failed) - cut_at if failed else None,
                      first_new_s=min(s.end for s in new) - cut_at if new else None,
                      p99_ms=p99, requests=len(after),
                      worst_ms=max(((s.end - s.start) * 1000 for s in after), default=0.0),
                      p50_elevated_s=self._p50_elevated(cut_at))

    def _p50_elevated(self, cut_at: float, bucket: float = 0.25) -> float:
        """From the cut to the end of the last 250 ms bucket (by request start) whose median
        latency was above twice the median of the 2 s before the cut."""
        samples = self.snapshot()
        before = sorted(s.end - s.start for s in samples if cut_at - 2 <= s.start < cut_at)
        if not before:
            return 0.0
        limit = 2 * before[len(before) // 2]
        buckets: dict[int, list[float]] = {}
        for s in samples:
            if s.start >= cut_at:
                buckets.setdefault(int((s.start - cut_at) / bucket), []).append(s.end - s.start)
        slow = [k for k, v in buckets.items() if sorted(v)[len(v) // 2] > limit]
        return (max(slow) + 1) * bucket if slow else 0.0


class LongResponse(threading.Thread):
    """One long response held open across a move or a failover (the test guest's
    /cgi-bin/stream sends `lines` lines, one every 0.1 s): it must end with every line."""

    def __init__(self, host: str, port: int, lines: int, timeout: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.lines, self.timeout = host, port, lines, timeout
        self.body = ""
        self.error: str | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", f"/cgi-bin/stream?{self.lines}")
            self.body = conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException) as exc:
            self.error = repr(exc)
        finally:
            conn.close()

    @property
    def broken(self) -> bool:
        return (self.error is not None or not self.body.rstrip().endswith("end")
                or self.body.count("line ") != self.lines)
