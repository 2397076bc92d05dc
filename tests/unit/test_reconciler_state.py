"""The reconciler's memory of a deployment (deploy/state.py): its retry backoff."""

from __future__ import annotations

from datetime import UTC, datetime

from onepane.deploy.reconciler import TAG, Reconciler
from onepane.deploy.state import Backoff, DeploymentState
from onepane.model import Instance, InstanceState
from onepane.providers.base import DATA_TAG
from onepane.spec import DeploymentSpec, Storage


def test_a_failing_action_is_retried_later_and_later_until_it_succeeds() -> None:
    b = Backoff()
    assert b.ready(0.0)
    delays = [b.failed(now) for now in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]  # capped
    assert not b.ready(8.0 + 29.9) and b.ready(8.0 + 30.0)
    b.succeeded()
    assert b.ready(8.0) and b.failed(8.0) == 0.5  # a success starts the sequence over


def test_a_new_deployment_state_remembers_nothing() -> None:
    """What a deployment re-created under a deleted one's name starts from (one pop forgot
    the old one: no map can carry its locations, replicas, SLA or plane over)."""
    st = DeploymentState(started=5.0)
    assert (st.plane, st.sla, st.adopting_until, st.empty_since) == (None, None, None, None)
    assert st.ever_up == set() and st.replica_ever_up == set() and st.instances == []
    assert st.backoff.ready(0.0)


def _inst(n: int, key: str | None, state: str = "running") -> Instance:
    tags = {TAG: "db", **({DATA_TAG: key} if key else {})}
    return Instance(id=f"inst-{n}", name=f"db-{n}", location="dc", provider_id=f"p{n}",
                    image="img", size="small", state=InstanceState(state), addresses=[],
                    ports={}, tags=tags, origin="onepane", created_at=datetime.now(UTC),
                    updated_at=datetime.now(UTC))


def test_replicas_that_keep_data_take_free_slots_and_wait_for_a_held_one() -> None:
    keep = DeploymentSpec(name="db", image="img", replicas={"dc": 2},
                          storage=Storage(data="keep"))
    new = Reconciler._new_replicas
    assert new("db", keep, [], 2, 2) == [{TAG: "db", DATA_TAG: "db.0"},
                                         {TAG: "db", DATA_TAG: "db.1"}]
    # slot 0's replica broke and is being destroyed: its replacement waits for slot 0 (the
    # destroy keeps its disks for it) instead of starting blank in another slot
    broken = _inst(1, "db.0", "error")
    assert new("db", keep, [broken, _inst(2, "db.1")], 2, 1) == []
    assert new("db", keep, [_inst(2, "db.1")], 2, 1) == [{TAG: "db", DATA_TAG: "db.0"}]
    blank = keep.model_copy(update={"storage": Storage()})
    assert new("db", blank, [], 2, 2) == [{TAG: "db"}, {TAG: "db"}]
