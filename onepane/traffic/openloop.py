"""Open-loop HTTP load, the way ordinary clients send it: for drills, benches and tests.

A closed-loop client (send, wait, send) slows down when the server does and so never builds the
queue a real user population builds: a request is due at its time whether or not earlier ones
have answered. This one schedules `rate` requests a second on one asyncio loop in a thread of
its own, through one `httpx.AsyncClient` whose pool is what applications run with (at most 256
connections, 64 kept alive), and records when each was due, when it ended, and who answered.
Latency is measured from when the request was due (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

CLIENT_RATE = 100.0  # requests a second one load process sends (LoadProcess)
STARTUP_S = 0.5  # a load process's time to import before its first request is due


@dataclass(frozen=True)
class Shot:
    due: float  # time.monotonic() when it was scheduled to leave
    end: float
    status: int  # 0: no answer (an error or the client's timeout)
    where: str  # X-Served-By, or the error

    @property
    def ms(self) -> float:
        return (self.end - self.due) * 1000


@dataclass
class SecondStats:
    second: int  # from the fault (negative: before it)
    requests: int
    failed: int
    p50_ms: float
    max_ms: float


class ShotStats:
    """What a run of shots says; the shots come from `snapshot()`, in this process or read
    from a load process's file."""

    def snapshot(self) -> list[Shot]:
        raise NotImplementedError

    def served_by(self, where: str, since: float, last: int = 20) -> bool:
        recent = sorted((s for s in self.snapshot() if s.due > since), key=lambda s: s.due)
        return len(recent) >= last and all(s.where == where for s in recent[-last:])

    def per_second(self, fault_at: float, before: int = 2, after: int = 8) -> list[SecondStats]:
        """Each second's requests by when they were due, from `before` seconds before the
        fault to `after` seconds after it."""
        out = []
        shots = self.snapshot()
        for sec in range(-before, after):
            lo, hi = fault_at + sec, fault_at + sec + 1
            ms = sorted(s.ms for s in shots if lo <= s.due < hi)
            failed = sum(1 for s in shots if lo <= s.due < hi and s.status != 200)
            out.append(SecondStats(sec, len(ms), failed, ms[len(ms) // 2] if ms else 0.0,
                                   ms[-1] if ms else 0.0))
        return out

    def worst_ms(self) -> float:
        return max((s.ms for s in self.snapshot()), default=0.0)

    def failed(self) -> int:
        return sum(1 for s in self.snapshot() if s.status != 200)


@dataclass
class OpenLoop(ShotStats):
    url: str
    rate: float = 300.0
    timeout: float = 15.0
    max_connections: int = 256
    max_keepalive: int = 64
    begin: float | None = None  # when its first request is due (time.monotonic()); None: now
    shots: list[Shot] = field(default_factory=list)
    sink: IO[str] | None = None  # each shot also written here as a JSON line, as it ends
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OpenLoop:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True,
                                        name="openloop")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.max_connections,
                              max_keepalive_connections=self.max_keepalive)
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout) as http:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic() if self.begin is None else self.begin
            n = 0
            while not self._stop.is_set():
                due = start + n / self.rate
                n += 1
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(http, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout + 1)

    async def _one(self, http: httpx.AsyncClient, due: float) -> None:
        try:
            r = await http.get(self.url)
            status, where = r.status_code, r.headers.get("x-served-by", "?")
        except httpx.HTTPError as exc:
            status, where = 0, type(exc).__name__
        shot = Shot(due, time.monotonic(), status, where)
        with self._lock:
            self.shots.append(shot)
        if self.sink is not None:
            self.sink.write(json.dumps(asdict(shot)) + "\n")

    def snapshot(self) -> list[Shot]:
        with self._lock:
            return list(self.shots)


class LoadProcess(ShotStats):
    """An OpenLoop spread over processes of its own, followed as it goes.

    A process of its own: a load generator sharing a process with onepane's control plane
    competes with it for the interpreter lock, and under a busy machine measured that instead of
    the data plane (issue 27's test failed on CI so). Several of them (`CLIENT_RATE` requests a
    second each), because one httpx pool is itself a queue that can tip: at 300 requests a second
    one pool costs its process 0.4-0.65 core, every request in flight makes each pool event scan
    longer, and the extra requests a failover holds for 1.5 s pushed one process to a full core
    in a few rounds of forty, from where it never drained although HAProxy's own log had every
    other request answered in at most 5 ms. Real load comes from many users, many pools; one
    process a client population never is.
    """

    def __init__(self, url: str, out: Path, rate: float = 300.0,
                 processes: int | None = None) -> None:
        self.url, self.out, self.rate = url, out, rate
        self.processes = processes or max(1, math.ceil(rate / CLIENT_RATE))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._shots: list[Shot] = []
        self._read: dict[Path, int] = {}  # bytes of each output already parsed

    @property
    def outputs(self) -> list[Path]:
        return [self.out] + [self.out.with_name(f"{self.out.name}.{n}")
                             for n in range(1, self.processes)]

    def start(self) -> LoadProcess:
        each = self.rate / self.processes
        # One schedule on the clock all processes share, each process 1/rate after the one
        # before: together they send evenly spaced requests. STARTUP_S lets them import first.
        begin = time.monotonic() + STARTUP_S
        for n, out in enumerate(self.outputs):
            out.write_text("")
            self._procs.append(subprocess.Popen(
                [sys.executable, "-m", "onepane.traffic.openloop", self.url, str(out), str(each),
                 repr(begin + n / self.rate)], stdin=subprocess.DEVNULL))
        return self

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cpu_seconds(self) -> float:
        """CPU the load processes have used so far (user + system): how close to its own limit
        the client is."""
        total = 0.0
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(proc.pid).cpu_times()
                total += t.user + t.system
        return total

    def snapshot(self) -> list[Shot]:
        for out in self.outputs:
            with open(out, "rb") as f:
                f.seek(self._read.get(out, 0))
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits
            self._read[out] = self._read.get(out, 0) + len(complete)
            self._shots.extend(Shot(**json.loads(line)) for line in complete.splitlines())
        return list(self._shots)


def main(argv: list[str] | None = None) -> None:
    """`python -m onepane.traffic.openloop URL OUT [RATE [BEGIN]]`: the load until SIGTERM, each
    request a JSON line in OUT as it ends, the first due at BEGIN (default: at once). Times are
    on the system's monotonic clock, which all processes share."""
    args = argv if argv is not None else sys.argv[1:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(args[1], "a", buffering=1) as sink:
        load = OpenLoop(args[0], rate=float(args[2]) if len(args) > 2 else 300.0, sink=sink,
                        begin=float(args[3]) if len(args) > 3 else None)
        load.start()
        stop.wait()
        load.stop()


def load_shots(path: str, url: str = "") -> OpenLoop:
    """What a process of main() recorded (or a LoadProcess's processes: PATH, PATH.1, ...), for
    per_second() and the rest."""
    loop = OpenLoop(url)
    first = Path(path)
    for out in [first, *sorted(first.parent.glob(first.name + ".*"))]:
        loop.shots += [Shot(**json.loads(line)) for line in out.read_text().splitlines()]
    loop.shots.sort(key=lambda s: s.due)
    return loop


if __name__ == "__main__":
    main()
