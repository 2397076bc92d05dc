"""SLA accounting against a known outage."""

from onepane.policy.sla import SlaTracker


def test_availability_and_error_budget_for_a_known_outage() -> None:
    t = SlaTracker(target=99.0, warm_up=0)
    assert t.observe(0.0, True) is None
    assert t.observe(990.0, False) is None  # 990 s up
    assert t.observe(995.0, False) is None  # 5 s down so far: 99.497 %, inside 99 %
    assert t.observe(1000.0, True) is None  # 10 s down of 1000: exactly 99.0 %
    r = t.report()
    assert r["availability"] == 99.0
    assert r["error_budget"] == {"allowed_down_s": 10.0, "used_down_s": 10.0, "remaining_pct": 0.0}
    assert t.observe(1000.0, False) is None
    assert t.observe(1001.0, True) == "violation"  # 11 s down of 1001 s
    assert t.report()["violated"] is True
    # spent: 0 % left (never a large negative percentage), the overspend in seconds
    assert t.budget() == {"allowed_down_s": 10.01, "used_down_s": 11.0, "remaining_pct": 0.0,
                          "overspent_s": 0.99}
    assert t.observe(3000.0, True) == "recovered"  # long enough up again
    assert round(t.availability(), 3) == round(100 * 2989 / 3000, 3)


def test_uneven_sampling_does_not_change_the_figure() -> None:
    a, b = SlaTracker(99.9, warm_up=0), SlaTracker(99.9, warm_up=0)
    for now, ok in [(0, True), (50, False), (60, True), (100, True)]:
        a.observe(now, ok)
    for now in range(0, 101):
        b.observe(now, not 50 <= now < 60)
    assert a.availability() == b.availability() == 90.0


def test_no_violation_while_a_deployment_warms_up() -> None:
    t = SlaTracker(99.9, warm_up=30)
    for now in range(0, 20):  # replicas still booting: nothing counted, nothing raised
        assert t.observe(float(now), False) is None
    assert t.report()["measuring"] is True and t.report()["measured_s"] == 0
    assert t.observe(20.0, True) is None  # first seen available: measuring from here
    assert t.report()["measuring"] is False
    assert t.observe(120.0, True) is None
    assert t.availability() == 100.0


def test_warm_up_ends_after_its_window_even_if_never_available() -> None:
    t = SlaTracker(99.9, warm_up=30)
    assert t.observe(0.0, False) is None
    assert t.observe(29.0, False) is None
    assert t.observe(31.0, False) is None  # the window is over: counting starts now
    assert t.observe(41.0, False) == "violation"
    assert t.report()["measured_s"] == 10.0
