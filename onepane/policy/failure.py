"""Failure policy for replicas: restart first, replace when restarting did not help.

Counts are consecutive failed health checks, as the health monitor keeps them. A replica the
provider reports gone (`missing`) has nothing to restart and is replaced at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..deploy.spec import FailurePolicy


@dataclass
class ReplicaRecord:
    restarts: int = 0
    failures_at_restart: int = 0


@dataclass
class FailureState:
    replicas: dict[str, ReplicaRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class FailureDecision:
    instance: str
    action: str  # restart | replace
    reason: str


def evaluate(policy: FailurePolicy, state: FailureState, instance: str, failures: int,
             provider_state: str, restarting: bool = False) -> FailureDecision | None:
    rec = state.replicas.setdefault(instance, ReplicaRecord())
    if restarting:  # checks fail while it restarts; count only those after the restart is done
        rec.failures_at_restart = failures
        return None
    if provider_state == "missing":
        return FailureDecision(instance, "replace", "the provider no longer has it")
    if provider_state == "error":  # crashed: the provider saw the process or VM die
        if rec.restarts < policy.max_restarts:
            return _restart(rec, instance, failures, "it crashed")
        return FailureDecision(instance, "replace", f"it crashed again after {rec.restarts} "
                               "restart(s)" if rec.restarts else "it crashed (no restarts allowed)")
    if failures == 0:
        rec.failures_at_restart = 0  # healthy again: later failures count from zero
        return None
    counted = failures - rec.failures_at_restart
    if rec.restarts and counted >= policy.replace_after:
        return FailureDecision(instance, "replace", f"{counted} failed checks after "
                               f"{rec.restarts} restart(s)")
    if counted >= policy.restart_after:
        if rec.restarts < policy.max_restarts:
            return _restart(rec, instance, failures, f"{failures} failed checks in a row")
        if not rec.restarts:
            return FailureDecision(instance, "replace", f"{failures} failed checks in a row "
                                   "(no restarts allowed)")
    return None


def _restart(rec: ReplicaRecord, instance: str, failures: int, reason: str) -> FailureDecision:
    rec.restarts += 1
    rec.failures_at_restart = failures
    return FailureDecision(instance, "restart", reason)


def forget(state: FailureState, live: set[str]) -> None:
    for gone in set(state.replicas) - live:
        del state.replicas[gone]
