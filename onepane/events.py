"""The event log: every action and every change of state, in order, for API, CLI and console."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from .listeners import Listeners
from .model import Event, Page
from .store.db import Store
from .store.tables import EventRow

Listener = Callable[[Event], None]
CHANNEL = "onepane_events"  # PostgreSQL NOTIFY channel: "an event was written", for other nodes
MAX_ID = 2**31 - 1  # the events.id column's largest value on every database
_EVENTS = cast(Table, EventRow.__table__)
_INSERT = insert(_EVENTS).returning(*_EVENTS.c, sort_by_parameter_order=True)  # built once
WINDOW = 500  # ids below the newest seen that are looked at again (commits land out of order)


def event_view(row: EventRow) -> Event:
    return Event(id=row.id, ts=row.ts, kind=row.kind, severity=row.severity,  # type: ignore[arg-type]
                 location=row.location, subject=row.subject, message=row.message, data=row.data)


class EventLog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._listeners: Listeners[Event] = Listeners()
        self._lock = threading.Lock()
        self.notify = store.engine.url.get_backend_name() == "postgresql"
        store.before_commit(self._write_pending)  # before the NOTIFY that announces them
        if self.notify:
            store.before_commit(self._notify_at_commit)
        self._seen: set[int] = set()  # ids published here, recent ones only
        self._newest = 0
        self._baseline: int | None = None
        self._catching_up = threading.Lock()

    def emit(self, kind: str, message: str, *, severity: str = "info", location: str | None = None,
             subject: str | None = None, data: dict[str, Any] | None = None,
             session: Session | None = None) -> None:
        """Write an event; inside `session` it commits (or not) with the change it describes."""
        if session is None:
            with self.tx() as s:
                self.emit(kind, message, severity=severity, location=location, subject=subject,
                          data=data, session=s)
            return
        # Written at the commit, every event of the transaction in one Core INSERT … RETURNING
        # (an ORM add cost more than the insert on every create; a sync pass writes hundreds)
        session.info.setdefault("pending_events", []).append({
            "kind": kind, "severity": severity, "location": location, "subject": subject,
            "message": message, "data": data or {}})
        self._notify(session)

    @staticmethod
    def _write_pending(session: Session) -> None:
        if pending := session.info.pop("pending_events", None):
            written = session.connection().execute(_INSERT, pending).all()
            session.info.setdefault("events", []).extend(EventRow(**r._mapping) for r in written)

    def _notify(self, session: Session) -> None:
        if self.notify:  # once per transaction, at its commit (see _notify_at_commit)
            session.info["notify"] = True

    @staticmethod
    def _notify_at_commit(session: Session) -> None:
        if session.info.pop("notify", False):
            session.execute(text(f"NOTIFY {CHANNEL}"))  # delivered when this commit lands

    def catch_up(self) -> int:
        """Publish what other nodes wrote since the last look (the relay calls this)."""
        with self._catching_up:
            with self.store.tx() as s:
                if self._baseline is None:  # the first look: what is there is history
                    self._baseline = s.scalar(select(func.max(EventRow.id))) or 0
                    self._newest = max(self._newest, self._baseline)
                    return 0
            floor = max(self._baseline, self._newest - WINDOW)
            with self.store.tx() as s:
                rows = list(s.scalars(select(EventRow).where(EventRow.id > floor)
                                      .order_by(EventRow.id).limit(5000)))
            fresh = sum(1 for r in rows if r.id not in self._seen)
            self._publish(rows)
            return fresh

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A transaction whose events reach listeners only once it has committed."""
        with self.store.tx() as session:
            yield session
        self.published(session)

    def published(self, session: Session) -> None:
        """Tell listeners about events written in a session that has committed."""
        self._publish(session.info.pop("events", []))

    def _publish(self, rows: list[EventRow]) -> None:
        listeners = self._listeners.snapshot()
        with self._lock:
            # once each: the relay may read a row before its own writer publishes it
            rows = [r for r in rows if r.id not in self._seen]
            for row in rows:
                self._seen.add(row.id)
                self._newest = max(self._newest, row.id)
            if len(self._seen) > 4 * WINDOW:
                self._seen = {i for i in self._seen if i > self._newest - 2 * WINDOW}
        if not listeners:
            return  # no one to tell: no view to build
        for row in rows:
            ev = event_view(row)
            for listener in listeners:
                listener(ev)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def list(self, *, after: int | None = None, limit: int = 100, kind: str | None = None,
             subject: str | None = None, location: str | None = None,
             before: int | None = None, severity: list[str] | None = None,
             since: datetime | None = None, until: datetime | None = None) -> Page[Event]:
        """Oldest first from `after`; with `before`, the newest `limit` older than it (a page
        back in time), still oldest first, and `next_cursor` is the id to go further back."""
        q = select(EventRow).limit(limit + 1)
        q = q.order_by(EventRow.id.desc()) if before is not None else q.order_by(EventRow.id)
        # ids are 32-bit on PostgreSQL; a larger cursor (the console's "from the newest",
        # 2**53) means "no bound" there rather than a value the column cannot compare with
        if after is not None:
            q = q.where(EventRow.id > min(after, MAX_ID))
        if before is not None:
            q = q.where(EventRow.id < min(before, MAX_ID))
        if severity:
            q = q.where(EventRow.severity.in_(severity))
        if since is not None:
            q = q.where(EventRow.ts >= since)
        if until is not None:
            q = q.where(EventRow.ts < until)
        if kind:
            q = q.where(EventRow.kind.startswith(kind))
        if subject:
            q = q.where(EventRow.subject == subject)
        if location:
            q = q.where(EventRow.location == location)
        with self.store.tx() as s:
            rows = list(s.scalars(q))
        items = [event_view(r) for r in rows[:limit]]
        if before is not None:
            nxt = str(items[-1].id) if len(rows) > limit else None
            return Page[Event](items=items[::-1], next_cursor=nxt)
        nxt = str(items[-1].id) if len(rows) > limit else None
        return Page[Event](items=items, next_cursor=nxt)
