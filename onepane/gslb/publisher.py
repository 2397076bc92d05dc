"""The publisher: keeps each deployment's DNS records equal to the front doors that serve now.

The reconciler says what a deployment wants published (`want`); one thread here writes it to
the deployment's DNS account as soon as it changes, and no more often: an unchanged answer is
never rewritten. Every `verify_interval` it reads the record back, and a record someone changed
by hand is put back, with an event. A DNS provider that is down or refuses is retried with a
growing pause (at most MAX_BACKOFF_S) until the change lands; only the newest wanted answer is
ever written, so changes land in order and a stale one never overwrites a newer one. Failures
are events (once per distinct error) and a status line, never an exception in the caller.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..events import EventLog
from .accounts import DnsAccount
from .zones import DnsRefused, DnsUnreachable, Writer, open_writer

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 5.0
FIRST_BACKOFF_S = 0.25


@dataclass(frozen=True)
class Wanted:
    provider: str  # a DNS account's name
    zone: str
    name: str  # absolute, with the trailing dot
    ttl: int
    addresses: frozenset[str]
    weights: tuple[tuple[str, int], ...] = ()  # (address, weight), sorted: active-active


@dataclass
class _State:
    wanted: Wanted
    changed_at: float
    written: Wanted | None = None
    verified_at: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    error: str | None = None
    withdrawing: bool = False
    last_update_ms: float | None = None


class Publisher:
    def __init__(self, events: EventLog, accounts: Mapping[str, DnsAccount],
                 verify_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.events = events
        self.accounts = dict(accounts)
        self.verify_interval = verify_interval
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._writers: dict[tuple[str, str], Writer] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="dns-publisher", daemon=True)

    # ---- what the reconciler calls -----------------------------------------------------------

    def want(self, deployment: str, wanted: Wanted) -> None:
        with self._cond:
            st = self._states.get(deployment)
            if st is not None and st.wanted == wanted and not st.withdrawing:
                return
            if st is None:
                self._states[deployment] = _State(wanted, self.clock())
            else:
                st.wanted, st.changed_at, st.withdrawing = wanted, self.clock(), False
                st.retry_at = 0.0  # a new answer is tried now, whatever the last one's pause
            self._cond.notify()

    def forget(self, deployment: str) -> None:
        """Stop looking after a deployment's records and leave them as they are (this node no
        longer decides; the one that does publishes)."""
        with self._cond:
            self._states.pop(deployment, None)

    def withdraw(self, deployment: str) -> None:
        """Remove what was published for a deployment that is gone."""
        with self._cond:
            st = self._states.get(deployment)
            if st is not None:
                st.withdrawing, st.retry_at = True, 0.0
                self._cond.notify()

    def status(self, deployment: str) -> dict[str, Any] | None:
        with self._cond:
            st = self._states.get(deployment)
            if st is None:
                return None
            w = st.wanted
            in_sync = st.written == w and st.error is None
            writer = self._writers.get((w.provider, w.zone))
            note = None
            if w.weights and writer is not None and not writer.weighted:
                note = (f"{w.provider} has no weighted records: every serving door gets an "
                        "equal share")
            return {"provider": w.provider, "zone": w.zone, "name": w.name, "ttl": w.ttl,
                    "wanted": sorted(w.addresses), "weights": dict(w.weights) or None,
                    "published": sorted(st.written.addresses) if st.written else None,
                    "state": "published" if in_sync else "failing" if st.error else "pending",
                    "error": st.error, "last_update_ms": st.last_update_ms, "note": note}

    # ---- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(timeout=self._next_wait())
                if self._stopping:
                    return
            try:
                self.run_once()
            except Exception:
                log.exception("DNS publisher: pass failed")

    def _next_wait(self) -> float:
        now = self.clock()
        waits = [0.5]
        for st in self._states.values():
            due = st.retry_at if st.error else (
                now if st.written != st.wanted or st.withdrawing
                else st.verified_at + self.verify_interval)
            waits.append(max(0.0, due - now))
        return min(waits)

    def run_once(self) -> None:
        with self._cond:
            work = list(self._states.items())
        for deployment, st in work:
            if self.clock() < st.retry_at:
                continue
            with self._cond:
                wanted, withdrawing = st.wanted, st.withdrawing
            try:
                if withdrawing:
                    self._writer(wanted).write(wanted.name, frozenset(), wanted.ttl, None)
                    with self._cond:
                        if self._states.get(deployment) is st and st.withdrawing:
                            del self._states[deployment]
                    self.events.emit("dns.withdrawn", f"{deployment}: {wanted.name} removed "
                                     f"from {wanted.provider}", subject=deployment)
                elif st.written != wanted:
                    self._publish(deployment, st, wanted)
                elif self.clock() - st.verified_at >= self.verify_interval:
                    self._verify(deployment, st, wanted)
            except (DnsRefused, DnsUnreachable) as exc:
                self._failed(deployment, st, wanted, exc)
            except Exception as exc:  # a driver's own surprise: still an event, never a crash
                log.exception("DNS publisher: %s", deployment)
                self._failed(deployment, st, wanted, exc)

    def _writer(self, wanted: Wanted) -> Writer:
        key = (wanted.provider, wanted.zone)
        writer = self._writers.get(key)
        if writer is None:
            account = self.accounts.get(wanted.provider)
            if account is None:
                raise DnsRefused(f"no DNS account named {wanted.provider!r} (configured: "
                                 f"{', '.join(sorted(self.accounts)) or 'none'})")
            writer = self._writers[key] = open_writer(account, wanted.zone)
        return writer

    def _publish(self, deployment: str, st: _State, wanted: Wanted) -> None:
        before = st.written.addresses if st.written else None
        writer = self._writer(wanted)
        writer.write(wanted.name, wanted.addresses, wanted.ttl,
                     dict(wanted.weights) if writer.weighted and wanted.weights else None)
        now = self.clock()
        took_ms = round((now - st.changed_at) * 1000, 1)
        with self._cond:
            if st.wanted == wanted:
                st.written, st.verified_at, st.last_update_ms = wanted, now, took_ms
        self._recovered(deployment, st)
        self.events.emit("dns.published", f"{deployment}: {wanted.name} -> "
                         f"{', '.join(sorted(wanted.addresses)) or '(none)'} at "
                         f"{wanted.provider}" + (f" (was {', '.join(sorted(before)) or 'none'})"
                                                 if before is not None else ""),
                         subject=deployment,
                         data={"name": wanted.name, "provider": wanted.provider,
                               "addresses": sorted(wanted.addresses),
                               "previous": sorted(before) if before is not None else None,
                               "update_ms": took_ms})

    def _verify(self, deployment: str, st: _State, wanted: Wanted) -> None:
        writer = self._writer(wanted)
        held = writer.read(wanted.name)
        weights_ok = not (writer.weighted and wanted.weights) or held.weights == wanted.weights
        if held.addresses == wanted.addresses and held.ttl in (None, wanted.ttl) and weights_ok:
            st.verified_at = self.clock()
            self._recovered(deployment, st)
            return
        self.events.emit("dns.drift", f"{deployment}: {wanted.name} at {wanted.provider} "
                         f"held {', '.join(sorted(held.addresses)) or 'nothing'} (ttl "
                         f"{held.ttl}) instead of {', '.join(sorted(wanted.addresses))}: "
                         "putting it back", severity="warning", subject=deployment,
                         data={"name": wanted.name, "found": sorted(held.addresses),
                               "found_ttl": held.ttl, "wanted": sorted(wanted.addresses)})
        with self._cond:
            st.written, st.changed_at = None, self.clock()
        self._publish(deployment, st, wanted)

    def _failed(self, deployment: str, st: _State, wanted: Wanted, exc: Exception) -> None:
        message = str(exc) or type(exc).__name__
        with self._cond:
            st.failures += 1
            st.retry_at = self.clock() + min(MAX_BACKOFF_S,
                                             FIRST_BACKOFF_S * 2 ** (st.failures - 1))
            repeated = st.error == message
            st.error = message
        if not repeated:
            self.events.emit("dns.failed", f"{deployment}: cannot publish {wanted.name} at "
                             f"{wanted.provider}: {message}; retrying until it lands",
                             severity="error", subject=deployment,
                             data={"name": wanted.name, "provider": wanted.provider,
                                   "error": message, "transient": isinstance(exc, DnsUnreachable)})

    def _recovered(self, deployment: str, st: _State) -> None:
        with self._cond:
            had, st.error, st.failures, st.retry_at = st.error, None, 0, 0.0
        if had:
            with contextlib.suppress(Exception):
                self.events.emit("dns.recovered", f"{deployment}: {st.wanted.name} at "
                                 f"{st.wanted.provider} is published again", subject=deployment)
