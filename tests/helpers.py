"""Test helpers: free ports, waiting on conditions with deadlines, cleaning up processes."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bench.common import kill_instances

__all__ = ["free_port", "kill_instances", "ok", "port_open", "wait_for"]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """Poll until cond() is truthy; fail with `what` after the deadline. No blind sleeps."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except AssertionError:
            raise  # the condition says it can never come true (e.g. the process died)
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ok(r: subprocess.CompletedProcess[str]) -> Any:
    """A CLI run that must succeed: its JSON output parsed (or its text)."""
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else r.stdout
