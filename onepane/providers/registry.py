"""Live providers, one per location, each with its own bounded thread pool.

The pool is the isolation boundary: a cloud that hangs for a minute ties up only its own
workers, while the other locations' calls keep flowing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InvalidInput, NotFound
from ..model import ProviderKind
from .base import Provider

T = TypeVar("T")


def build_provider(name: str, kind: str, *, state_dir: Path, region: str, driver: str | None,
                   credentials: dict[str, str], options: dict[str, Any]) -> Provider:
    if kind == ProviderKind.local:
        from .local import LocalProvider
        return LocalProvider(name, state_dir, options)
    if kind == ProviderKind.netns:
        from .netns import NetnsProvider
        return NetnsProvider(name, state_dir, options)
    if kind == ProviderKind.vm:
        from .vm.provider import VmProvider
        return VmProvider(name, state_dir, options)
    if kind == ProviderKind.cloud:
        if not driver:
            raise InvalidInput("cloud locations need a Libcloud driver name", field="driver")
        from .cloud import CloudProvider
        return CloudProvider(name, driver, region, credentials, options)
    raise InvalidInput(f"unknown provider {kind!r}; use local, netns, vm or cloud", field="provider")


class Registry:
    def __init__(self, workers_per_location: int = 8) -> None:
        self.workers = workers_per_location
        self._providers: dict[str, Provider] = {}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def add(self, provider: Provider, workers: int | None = None) -> None:
        with self._lock:
            self._providers[provider.location] = provider
            self._pools[provider.location] = ThreadPoolExecutor(
                max_workers=workers or self.workers, thread_name_prefix=f"loc-{provider.location}")

    def remove(self, name: str) -> Provider | None:
        with self._lock:
            pool = self._pools.pop(name, None)
            provider = self._providers.pop(name, None)
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
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
        """Run fn(provider) in the location's pool and wait for it."""
        provider = self.get(name)
        return self._pools[name].submit(fn, provider).result(timeout)

    def close(self) -> None:
        with self._lock:
            pools, providers = list(self._pools.values()), list(self._providers.values())
            self._pools.clear()
            self._providers.clear()
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for p in providers:
            p.close()
