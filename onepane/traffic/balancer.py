"""Which backend serves the next request: the data plane's own, fast, local decision.

The control plane orders the pools (one per location, primary first) or weights them; the
balancer follows that and reacts to failures on its own, immediately: a backend that refused,
reset or timed out is marked down at once, and in `ordered` mode the balancer moves on to the
next pool and stays there (it never fails back by itself; only a new configuration does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Backend = tuple[str, int]


@dataclass
class Pool:
    name: str
    backends: list[Backend]
    weight: int = 1
    _next: int = 0
    current_weight: int = 0


@dataclass
class Balancer:
    pools: list[Pool]
    policy: Literal["ordered", "weighted"] = "ordered"
    down: dict[Backend, float] = field(default_factory=dict)  # backend -> when it went down
    current: int = 0  # ordered: index of the serving pool
    pool_of: dict[Backend, str] = field(default_factory=dict)  # backend -> its pool's name

    def __post_init__(self) -> None:
        self.pool_of = {b: p.name for p in reversed(self.pools) for b in p.backends}

    def up(self, b: Backend) -> bool:
        return b not in self.down

    def pool_up(self, pool: Pool) -> bool:
        return any(self.up(b) for b in pool.backends)

    def mark_down(self, b: Backend) -> None:
        self.down.setdefault(b, time.monotonic())

    def mark_up(self, b: Backend) -> None:
        self.down.pop(b, None)

    def serving_pool(self) -> Pool | None:
        if self.policy == "ordered":
            n = len(self.pools)
            for step in range(n):  # walk forward from the current pool, round and round
                i = (self.current + step) % n
                if self.pool_up(self.pools[i]):
                    self.current = i
                    return self.pools[i]
            return None
        # smooth weighted round robin over the pools that have a live backend
        live = [p for p in self.pools if p.weight > 0 and self.pool_up(p)]
        if not live:
            return None
        total = sum(p.weight for p in live)
        for p in live:
            p.current_weight += p.weight
        best = max(live, key=lambda p: p.current_weight)
        best.current_weight -= total
        return best

    def choose(self, exclude: set[Backend] | None = None) -> tuple[Pool, Backend] | None:
        """The next backend, skipping ones that are down or already failed this request."""
        if not self.down and not exclude and (self.policy == "ordered" or len(self.pools) == 1):
            # The hot path: nothing has failed, so the current pool serves, round robin.
            pool = self.pools[self.current % len(self.pools)] if self.pools else None
            if pool and pool.backends:
                pool._next = (pool._next + 1) % len(pool.backends)
                return pool, pool.backends[pool._next]
        exclude = exclude or set()
        pool = self.serving_pool()
        if pool is not None:
            candidates = [b for b in pool.backends if self.up(b) and b not in exclude]
            if candidates:
                pool._next = (pool._next + 1) % len(candidates)
                return pool, candidates[pool._next]
        # every live backend of the serving pool already failed this request: try the rest
        for p in self.pools:
            rest = [b for b in p.backends if self.up(b) and b not in exclude]
            if rest:
                return p, rest[0]
        return self.last_resort(exclude)

    def last_resort(self, exclude: set[Backend]) -> tuple[Pool, Backend] | None:
        """Everything is marked down: try the longest-down backend rather than refuse outright."""
        downs = sorted((t, b) for b, t in self.down.items() if b not in exclude)
        for _, b in downs:
            for p in self.pools:
                if b in p.backends:
                    return p, b
        return None
