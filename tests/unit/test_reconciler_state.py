"""The reconciler's memory of a deployment (deploy/state.py): its retry backoff."""

from __future__ import annotations

from onepane.deploy.state import Backoff, DeploymentState


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
