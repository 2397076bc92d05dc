"""Live providers, one per location, each with its own bounded thread pool.

The pool is the isolation boundary: a cloud that hangs for a minute ties up only its own
workers, while the other locations' calls keep flowing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InvalidInput, NotFound, TransientProviderError
from ..model import ProviderKind
from .base import Provider

T = TypeVar("T")
QUICK_WORKERS = 2
QUICK_BACKLOG = 8  # callers (API threads) one location may hold waiting at a time


def build_provider(name: str, kind: str, *, state_dir: Path, region: str, driver: str | None,
                   credentials: dict[str, str], options: dict[str, Any]) -> Provider:
    if kind == ProviderKind.local:
        from .local import LocalProvider
        return LocalProvider(name, state_dir, options)
    if kind == ProviderKind.netns:
        from .netns import NetnsProvider
        return NetnsProvider(name, state_dir, options)
    if kind == ProviderKind.vm and "hosts" in options:
        from .vm.hosts import HostsProvider
        return HostsProvider(name, state_dir, options, credentials)
    if kind == ProviderKind.vm:
        from .vm.provider import VmProvider
        return VmProvider(name, state_dir, options)
    if kind == ProviderKind.docker:
        from .docker.provider import DockerProvider
        return DockerProvider(name, state_dir, options, credentials)
    if kind == ProviderKind.sim:
        from .sim import SimProvider
        return SimProvider(name, options)
    if kind == ProviderKind.cloud:
        if not driver:
            raise InvalidInput("cloud locations need a Libcloud driver name", field="driver")
        if driver.startswith("ec2"):  # ec2, ec2-compat: EC2's API, with what only it offers
            from .ec2 import Ec2Provider
            return Ec2Provider(name, driver, region, credentials, options)
        from .cloud import CloudProvider
        return CloudProvider(name, driver, region, credentials, options)
    raise InvalidInput(f"unknown provider {kind!r}; use local, netns, vm, docker, cloud or sim",
                       field="provider")


class Registry:
    def __init__(self, workers_per_location: int = 8) -> None:
        self.workers = workers_per_location
        self._providers: dict[str, Provider] = {}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._quick: dict[str, ThreadPoolExecutor] = {}
        self._running: dict[str, dict[int, float]] = {}  # location -> call -> when it started
        self._waiting: dict[str, int] = {}  # location -> callers waiting for an answer

    def add(self, provider: Provider, workers: int | None = None) -> None:
        with self._lock:
            self._providers[provider.location] = provider
            self._pools[provider.location] = ThreadPoolExecutor(
                max_workers=workers or self.workers, thread_name_prefix=f"loc-{provider.location}")
            # Interactive calls (validate a request, read a console) get their own two workers:
            # they must not queue behind long jobs, nor a hung endpoint take more than these.
            self._quick[provider.location] = ThreadPoolExecutor(
                max_workers=QUICK_WORKERS, thread_name_prefix=f"ask-{provider.location}")

    def remove(self, name: str) -> Provider | None:
        with self._lock:
            pool = self._pools.pop(name, None)
            quick = self._quick.pop(name, None)
            provider = self._providers.pop(name, None)
        for p in (pool, quick):
            if p:
                p.shutdown(wait=False, cancel_futures=True)
        return provider

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise NotFound(f"no location {name!r}", field="location") from None

    def names(self) -> list[str]:
        return list(self._providers)

    def submit(self, name: str, fn: Callable[..., T], *args: Any) -> Future[T]:
        self.get(name)
        return self._pools[name].submit(fn, *args)

    def run(self, name: str, fn: Callable[[Provider], T], timeout: float | None = 120) -> T:
        """Run fn(provider) in the location's pool and wait for it, at most `timeout` seconds.

        A location whose every worker has been stuck longer than that is not asked again: the
        caller gets a 503 at once instead of one more thread parked on a hung endpoint (45
        creates at a hung cloud once held the API's threads for everyone)."""
        provider = self.get(name)
        with self._lock:
            started = self._running.setdefault(name, {})
            now = time.monotonic()
            if timeout is not None and len(started) >= QUICK_WORKERS and \
                    all(now - t > timeout for t in started.values()):
                raise TransientProviderError(
                    f"location {name} is not answering: {len(started)} calls have waited over "
                    f"{timeout:.0f} s")
            if self._waiting.get(name, 0) >= QUICK_BACKLOG:
                raise TransientProviderError(
                    f"location {name} is slow to answer: {QUICK_BACKLOG} requests are already "
                    "waiting for it; retry later")
            self._waiting[name] = self._waiting.get(name, 0) + 1
        token = object()

        def tracked(p: Provider) -> T:
            with self._lock:
                self._running.setdefault(name, {})[id(token)] = time.monotonic()
            try:
                return fn(p)
            finally:
                with self._lock:
                    self._running.get(name, {}).pop(id(token), None)
        try:
            future = self._quick[name].submit(tracked, provider)
            try:
                return future.result(timeout)
            except FutureTimeout as exc:
                future.cancel()
                raise TransientProviderError(f"location {name} did not answer within "
                                             f"{timeout:.0f} s") from exc
        finally:
            with self._lock:
                self._waiting[name] -= 1


    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values()) + list(self._quick.values())
            providers = list(self._providers.values())
            self._pools.clear()
            self._quick.clear()
            self._providers.clear()
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for p in providers:
            p.close()
