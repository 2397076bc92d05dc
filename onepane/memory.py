"""Keep the server's resident memory flat under long streaming work.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
multi-megabyte buffers (upload parts, copy chunks) come from per-thread arenas and stay resident
after they are freed; with a thread pool per location that adds tens of megabytes that never go
back. Fixing the threshold keeps big buffers mmapped (returned on free) and two arenas bound the
rest. Equivalent to MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=2, applied from inside.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def bound_malloc(mmap_threshold: int = 128 * 1024, arenas: int = 2) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt refused; memory stays as the C library manages it")
    return ok
