"""Decisions only the leader may write.

The reconciler decides (fail over, add or remove a replica) inside `deciding(fence)`; the writes
those decisions make call `check(session)` in their transaction, which runs the leader's fence
there. A deposed leader's fence fails, so its transaction rolls back and nothing it decided
lands. Outside `deciding`, `check` does nothing: a user's own request is not a decision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

Fence = Callable[[Session], None]
_local = threading.local()


@contextmanager
def deciding(fence: Fence | None) -> Iterator[None]:
    before = getattr(_local, "fence", None)
    _local.fence = fence
    try:
        yield
    finally:
        _local.fence = before


def current() -> Fence | None:
    """This thread's fence, for a write another thread makes on its behalf."""
    fence: Fence | None = getattr(_local, "fence", None)
    return fence


def check(session: Session, fence: Fence | None = None) -> None:
    """Run `fence` (this thread's if not given) in the session's transaction."""
    fence = fence or current()
    if fence is not None:
        fence(session)
