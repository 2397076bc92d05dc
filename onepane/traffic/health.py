"""Active health checks, one asyncio task per replica, with rise/fall damping.

A replica changes state only after `rise` successes or `fall` failures in a row, so one lost
probe does not move traffic and a flapping replica does not bounce it back and forth. (The
data plane does the *passive* part: a refused or timed-out request marks a backend down there at
once, without waiting for this.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

from ..spec import HealthCheck

RECENT = 10


@dataclass
class Target:
    key: str  # instance id
    location: str
    host: str
    port: int
    check: HealthCheck
    source: str | None = None  # the address the check leaves from (Provider.check_source)
    up: bool = False
    successes: int = 0
    failures: int = 0
    since: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    latency_ms: float | None = None
    recent_ms: tuple[float, ...] = ()  # the last RECENT passing checks' times, oldest first


class HealthMonitor:
    """Runs the checks on its own event loop thread; everything else reads snapshots."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.targets: dict[str, dict[str, Target]] = {}  # deployment -> instance -> target
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.transitions: list[tuple[str, Target]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.loop.run_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        async def cancel() -> None:
            for t in self.tasks.values():
                t.cancel()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    def set_targets(self, deployment: str, targets: list[Target]) -> None:
        """Make the checked set match; targets that stay keep their state."""
        with self._lock:
            current = self.targets.setdefault(deployment, {})
            wanted = {t.key: t for t in targets}
            for key in list(current):
                old, new = current[key], wanted.get(key)
                if new is None or (old.host, old.port) != (new.host, new.port):
                    del current[key]
                    task = self.tasks.pop((deployment, key), None)
                    if task:
                        self.loop.call_soon_threadsafe(task.cancel)
            for key, t in wanted.items():
                if key not in current:
                    current[key] = t
                    self.loop.call_soon_threadsafe(self._spawn, deployment, t)
                else:
                    current[key].check = t.check
                    current[key].location = t.location  # a live move keeps the guest and its state

    def forget(self, deployment: str) -> None:
        self.set_targets(deployment, [])
        with self._lock:
            self.targets.pop(deployment, None)

    def snapshot(self, deployment: str) -> list[Target]:
        with self._lock:
            return [Target(**vars(t)) for t in self.targets.get(deployment, {}).values()]

    def drain_transitions(self) -> list[tuple[str, Target]]:
        with self._lock:
            out, self.transitions = self.transitions, []
        return out

    def _spawn(self, deployment: str, t: Target) -> None:
        self.tasks[(deployment, t.key)] = self.loop.create_task(self._run(deployment, t))

    async def _run(self, deployment: str, t: Target) -> None:
        while True:
            started = time.monotonic()
            ok, error = await probe(t)
            with self._lock:
                t.latency_ms = (time.monotonic() - started) * 1000 if ok else None
                if t.latency_ms is not None:
                    t.recent_ms = (*t.recent_ms[1 - RECENT:], t.latency_ms)
                t.last_error = error
                if ok:
                    t.successes, t.failures = t.successes + 1, 0
                    if not t.up and t.successes >= t.check.rise:
                        t.up, t.since = True, time.monotonic()
                        self.transitions.append((deployment, Target(**vars(t))))
                else:
                    t.failures, t.successes = t.failures + 1, 0
                    if t.up and t.failures >= t.check.fall:
                        t.up, t.since = False, time.monotonic()
                        self.transitions.append((deployment, Target(**vars(t))))
            await asyncio.sleep(max(0.0, t.check.interval - (time.monotonic() - started)))


async def probe(t: Target) -> tuple[bool, str | None]:
    try:
        async with asyncio.timeout(t.check.timeout):
            reader, writer = await asyncio.open_connection(
                t.host, t.port, local_addr=(t.source, 0) if t.source else None)
            try:
                if t.check.type == "tcp":
                    return True, None
                writer.write(f"GET {t.check.path} HTTP/1.1\r\nHost: {t.host}\r\n"
                             f"User-Agent: onepane-health\r\nConnection: close\r\n\r\n".encode())
                status = await _status(reader)
                return (200 <= status < 400), (None if status < 400 else f"HTTP {status}")
            finally:
                writer.close()
    except TimeoutError:
        return False, f"timeout after {t.check.timeout}s"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc.strerror or exc}"


async def _status(reader: asyncio.StreamReader) -> int:
    class Head:
        done = False

        def on_headers_complete(self) -> None:
            self.done = True

    head = Head()
    parser: Any = httptools.HttpResponseParser(head)
    while not head.done:
        data = await reader.read(4096)
        if not data:
            raise ConnectionResetError("closed before a status line")
        with contextlib.suppress(httptools.HttpParserUpgrade):
            parser.feed_data(data)
    return int(parser.get_status_code())
