"""The leader's lease: a PostgreSQL advisory lock, and an epoch for fencing.

The lock is held by one connection of its own. When the leader's process dies, PostgreSQL
closes that session and frees the lock at once, so a standby's next try takes it: no waiting
for a time-out to expire, no consensus written by hand. Taking the lock bumps the lease row's
epoch; every decision's transaction checks, with the row locked, that the epoch is still the
one its leader took (`fence`). A leader cut off from the database cannot write anything, and
one that lost its lock while it was slow finds a newer epoch and writes nothing either.

On SQLite there is one node, which always leads (the epoch still moves on each start).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from ..errors import Conflict
from ..store.db import Store
from ..store.tables import LeaseRow

log = logging.getLogger(__name__)
LOCK_KEY = 0x6F6E6570  # "onep": the advisory lock every node of one database contends for
LEADER = "leader"


class NotLeader(Conflict):
    title = "Not the leader"


class LeaderLease:
    def __init__(self, store: Store, node: str) -> None:
        self.store = store
        self.node = node
        self.epoch = 0
        self.held = False
        self.postgres = store.engine.url.get_backend_name() == "postgresql"
        self._engine: Any = None
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it. True when this node holds it now."""
        if self.held:
            return True
        if self.postgres:
            try:
                if self._conn is None:
                    if self._engine is None:
                        self._engine = create_engine(self.store.engine.url, poolclass=NullPool)
                    self._conn = self._engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT")
                got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                         {"k": LOCK_KEY}).scalar()
            except Exception as exc:  # the database is away: try again on the next pass
                log.warning("leader lease: %s", exc)
                self._drop()
                return False
            if not got:
                return False
        self.epoch = self._bump()
        self.held = True
        return True

    def still_held(self) -> bool:
        """The lock lives as long as its session: a failed round trip means it is gone."""
        if not self.held or not self.postgres:
            return self.held
        try:
            assert self._conn is not None
            self._conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            log.warning("leader lease lost: %s", exc)
            self.held = False
            self._drop()
            return False

    def fence(self, session: Session) -> None:
        """Inside a decision's transaction: refuse it unless this node's epoch is current.
        The UPDATE locks the lease row until the transaction ends, so a takeover waits for
        this decision to land or roll back, never the other way round."""
        done = session.execute(update(LeaseRow).where(
            LeaseRow.name == LEADER, LeaseRow.holder == self.node, LeaseRow.epoch == self.epoch)
            .values(holder=self.node))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            self.held = False
            raise NotLeader(f"node {self.node} no longer leads (its epoch {self.epoch} is past)")

    def release(self) -> None:
        self.held = False
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            except Exception:
                log.debug("leader lease: unlock failed", exc_info=True)
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _bump(self) -> int:
        with self.store.tx() as s:
            row = s.get(LeaseRow, LEADER, with_for_update=True)
            if row is None:
                row = LeaseRow(name=LEADER, holder=self.node, epoch=1)
                s.add(row)
            else:
                row.holder, row.epoch = self.node, row.epoch + 1
            s.flush()
            return row.epoch

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("leader lease: close failed", exc_info=True)
            self._conn = None
