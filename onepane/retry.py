"""Retries with full-jitter exponential backoff, for transient provider errors only."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import TransientProviderError

T = TypeVar("T")


def with_retry(fn: Callable[[], T], *, attempts: int = 5, base: float = 0.2, cap: float = 5.0,
               on_retry: Callable[[int, Exception], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TransientProviderError as exc:
            if attempt == attempts:
                raise
            if on_retry:
                on_retry(attempt, exc)
            sleep(random.uniform(0, min(cap, base * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")
