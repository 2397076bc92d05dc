"""The leader's lease on a real PostgreSQL: one holder at a time, the lock freed when the
holder's session ends, and a deposed leader's decision refused by the fence."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from onepane.cluster.lease import LeaderLease, NotLeader
from onepane.store import fencing
from onepane.store.db import Store
from onepane.store.tables import LocationRow
from tests.e2e.test_crash_drill import fresh_database


def test_one_leader_then_the_next_and_the_old_one_is_fenced(postgres_url: str) -> None:
    store = Store(fresh_database(postgres_url, "onepane_lease"))
    store.migrate()
    a, b = LeaderLease(store, "node-a"), LeaderLease(store, "node-b")
    try:
        assert a.try_acquire() and a.epoch == 1
        assert not b.try_acquire()  # held
        assert a.still_held()
        with store.tx() as s, fencing.deciding(a.fence):  # the leader's decision lands
            fencing.check(s)
            s.add(LocationRow(name="by-a", provider="local", region="r"))

        assert a._conn is not None
        a._conn.invalidate()  # node-a's session dies (as when its process is killed)
        assert b.try_acquire() and b.epoch == 2  # taken at once: no time-out to wait for
        with pytest.raises(NotLeader), store.tx() as s, fencing.deciding(a.fence):
            fencing.check(s)  # node-a, not knowing yet, decides: refused, rolled back
            s.add(LocationRow(name="by-a-late", provider="local", region="r"))
        assert not a.held and not a.still_held()
        with store.tx() as s:
            names = set(s.scalars(sa.select(LocationRow.name)))
        assert names == {"by-a"}
        with store.tx() as s:  # outside `deciding`, a user's own request is not fenced
            fencing.check(s)
    finally:
        a.release()
        b.release()
        store.close()
