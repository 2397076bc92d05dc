"""Failure policy for replicas: restart first, replace when restarting did not help.

Counts are consecutive failed health checks, as the health monitor keeps them. A replica the
provider reports gone (`missing`) has nothing to restart and is replaced at once.

A virtual machine (`slow_boot`) takes seconds to boot, many more under emulation: after its
restart, its failed checks do not count until it has passed one again or `boot_grace` seconds
have gone by — replacing it while it boots (issue 28 saw it 3 s after the reboot) throws away a
guest that was about to serve, and its state with it.
"""

from __future__ import annotations

from typing import NamedTuple

from ..spec import FailurePolicy


class ReplicaRecord(NamedTuple):
    restarts: int = 0
    failures_at_restart: int = 0
    restarted_at: float | None = None  # until it passes a check after its restart


# Records of the replicas that failed, as plain tuples (see autoscale.Scales for why).
Records = dict[str, tuple[int, int, float | None]]


class FailureDecision(NamedTuple):
    instance: str
    action: str  # restart | replace
    reason: str


def evaluate(policy: FailurePolicy, state: Records, instance: str, failures: int,
             provider_state: str, restarting: bool = False, now: float = 0.0,
             slow_boot: bool = False) -> FailureDecision | None:
    t = state.get(instance)
    rec = None if t is None else ReplicaRecord._make(t)
    if failures == 0 and provider_state not in ("missing", "error", "stopped"):
        if rec is not None and (rec.failures_at_restart or rec.restarted_at is not None):
            state[instance] = (rec.restarts, 0, None)  # later failures count from 0
        return None  # the common case, kept cheap: no record for a replica that never failed
    if rec is None:
        rec = ReplicaRecord()
    if restarting:  # checks fail while it restarts; count only those after the restart is done
        state[instance] = (rec.restarts, failures, now)
        return None
    if (slow_boot and rec.restarted_at is not None and provider_state == "running"
            and now - rec.restarted_at < policy.boot_grace):
        state[instance] = (rec.restarts, failures, rec.restarted_at)
        return None  # booting again after its restart: its checks do not count yet
    if provider_state == "missing":
        return FailureDecision(instance, "replace", "the provider no longer has it")
    if provider_state == "stopped":  # by `onepane down` or by hand: a replica runs; no crash
        state[instance] = (rec.restarts, failures, now)  # its checks count from its start
        return FailureDecision(instance, "restart", "it was stopped (onepane down, or by hand) "
                               "and a deployment's replica runs")
    if provider_state == "error":  # crashed: the provider saw the process or VM die
        if rec.restarts < policy.max_restarts:
            return _restart(state, rec, instance, failures, "it crashed", now)
        return FailureDecision(instance, "replace", f"it crashed again after {rec.restarts} "
                               "restart(s)" if rec.restarts else "it crashed (no restarts allowed)")
    counted = failures - rec.failures_at_restart
    if rec.restarts and counted >= policy.replace_after:
        return FailureDecision(instance, "replace", f"{counted} failed checks after "
                               f"{rec.restarts} restart(s)")
    if counted >= policy.restart_after:
        if rec.restarts < policy.max_restarts:
            return _restart(state, rec, instance, failures, f"{failures} failed checks in a row",
                            now)
        if not rec.restarts:
            return FailureDecision(instance, "replace", f"{failures} failed checks in a row "
                                   "(no restarts allowed)")
    return None


def _restart(state: Records, rec: ReplicaRecord, instance: str, failures: int,
             reason: str, now: float) -> FailureDecision:
    state[instance] = (rec.restarts + 1, failures, now)
    return FailureDecision(instance, "restart", reason)


def forget(state: Records, live: set[str]) -> None:
    for gone in set(state) - live:
        del state[gone]
