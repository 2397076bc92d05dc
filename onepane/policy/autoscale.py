"""Load policy: replicas of each serving location follow one metric between min and max.

Flapping is prevented three ways: the in and out thresholds are apart (the spec rejects
overlapping bands), a breach must be sustained before it counts, and each direction has its
own cooldown measured from the last change in *either* direction.
"""

from __future__ import annotations

from typing import NamedTuple

from ..spec import Autoscale


class LocationScale(NamedTuple):
    replicas: int
    above_since: float | None = None
    below_since: float | None = None
    last_change: float = float("-inf")


# A deployment's scale state per serving location, kept as plain tuples: Python's cycle
# collector stops tracking a plain tuple of numbers (not a NamedTuple) and a dict of them, and
# at 50,000 deployments a full collection of tracked state took 120 ms more.
Scales = dict[str, tuple[int, float | None, float | None, float]]


def get(state: Scales, location: str) -> LocationScale | None:
    t = state.get(location)
    return None if t is None else LocationScale._make(t)


def put(state: Scales, location: str, st: LocationScale) -> LocationScale:
    state[location] = tuple(st)  # type: ignore[assignment]
    return st


class ScaleDecision(NamedTuple):
    location: str
    before: int
    after: int
    reason: str


def initial(policy: Autoscale, base: int) -> LocationScale:
    """A location starts from the spec's count, kept within the policy's bounds."""
    return LocationScale(min(max(base, policy.min), policy.max))


def evaluate(policy: Autoscale, state: Scales, location: str, base: int,
             value: float | None, now: float) -> ScaleDecision | None:
    """One evaluation for one serving location; `base` is the spec's count for it."""
    st = get(state, location)
    if st is None:
        st = put(state, location, initial(policy, base))
    if value is None:
        if st.above_since is not None or st.below_since is not None:
            put(state, location, st._replace(above_since=None, below_since=None))
        return None
    if value > policy.scale_out_above:
        since = now if st.above_since is None else st.above_since
        if (now - since >= policy.sustain and now - st.last_change >= policy.cooldown_out
                and st.replicas < policy.max):
            return _change(state, st, location, min(policy.max, st.replicas + policy.step), now,
                           f"{policy.metric} {value:.1f} > {policy.scale_out_above:g} for "
                           f"{now - since:.1f} s")
        if since != st.above_since or st.below_since is not None:
            put(state, location, st._replace(above_since=since, below_since=None))
    elif value < policy.scale_in_below:
        since = now if st.below_since is None else st.below_since
        if (now - since >= policy.sustain and now - st.last_change >= policy.cooldown_in
                and st.replicas > policy.min):
            return _change(state, st, location, max(policy.min, st.replicas - policy.step), now,
                           f"{policy.metric} {value:.1f} < {policy.scale_in_below:g} for "
                           f"{now - since:.1f} s")
        if since != st.below_since or st.above_since is not None:
            put(state, location, st._replace(above_since=None, below_since=since))
    elif st.above_since is not None or st.below_since is not None:
        put(state, location, st._replace(above_since=None, below_since=None))
    return None


def due(policy: Autoscale, st: LocationScale) -> float:
    """When a breach under way may next change the count (inf when none is under way): its
    sustain and the cooldown since the last change must both be over."""
    if st.above_since is not None and st.replicas < policy.max:
        return max(st.above_since + policy.sustain, st.last_change + policy.cooldown_out)
    if st.below_since is not None and st.replicas > policy.min:
        return max(st.below_since + policy.sustain, st.last_change + policy.cooldown_in)
    return float("inf")


def _change(state: Scales, st: LocationScale, location: str, to: int, now: float,
            reason: str) -> ScaleDecision:
    # the next change needs a fresh, sustained breach
    put(state, location, LocationScale(to, None, None, now))
    return ScaleDecision(location, st.replicas, to, reason)
