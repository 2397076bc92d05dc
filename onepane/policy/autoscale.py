"""Load policy: replicas of each serving location follow one metric between min and max.

Flapping is prevented three ways: the in and out thresholds are apart (the spec rejects
overlapping bands), a breach must be sustained before it counts, and each direction has its
own cooldown measured from the last change in *either* direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..deploy.spec import Autoscale


@dataclass
class LocationScale:
    replicas: int
    above_since: float | None = None
    below_since: float | None = None
    last_change: float = float("-inf")


@dataclass
class ScaleState:
    locations: dict[str, LocationScale] = field(default_factory=dict)


@dataclass(frozen=True)
class ScaleDecision:
    location: str
    before: int
    after: int
    reason: str


def evaluate(policy: Autoscale, state: ScaleState, location: str, base: int, value: float | None,
             now: float) -> ScaleDecision | None:
    """One evaluation for one serving location; `base` is the spec's count for it."""
    st = state.locations.get(location)
    if st is None:
        st = state.locations[location] = LocationScale(min(max(base, policy.min), policy.max))
    if value is None:
        st.above_since = st.below_since = None
        return None
    if value > policy.scale_out_above:
        st.below_since = None
        st.above_since = now if st.above_since is None else st.above_since
        if (now - st.above_since >= policy.sustain and now - st.last_change >= policy.cooldown_out
                and st.replicas < policy.max):
            return _change(st, location, min(policy.max, st.replicas + policy.step), now,
                           f"{policy.metric} {value:.1f} > {policy.scale_out_above:g} for "
                           f"{now - st.above_since:.1f} s")
    elif value < policy.scale_in_below:
        st.above_since = None
        st.below_since = now if st.below_since is None else st.below_since
        if (now - st.below_since >= policy.sustain and now - st.last_change >= policy.cooldown_in
                and st.replicas > policy.min):
            return _change(st, location, max(policy.min, st.replicas - policy.step), now,
                           f"{policy.metric} {value:.1f} < {policy.scale_in_below:g} for "
                           f"{now - st.below_since:.1f} s")
    else:
        st.above_since = st.below_since = None
    return None


def _change(st: LocationScale, location: str, to: int, now: float, reason: str) -> ScaleDecision:
    before, st.replicas, st.last_change = st.replicas, to, now
    st.above_since = st.below_since = None  # the next change needs a fresh, sustained breach
    return ScaleDecision(location, before, to, reason)
