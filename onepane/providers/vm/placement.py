"""Which hypervisor host gets a new VM (or a VM leaving a host): a pure, declared policy.

1. Only hosts that answer, are not in maintenance and not excluded (the host being emptied).
2. Only hosts with room: free memory (the host's memory less what its defined VMs are given)
   of at least the VM's, and vCPUs committed at most OVERCOMMIT x the host's CPUs after it.
3. Among those, the host with the fewest replicas of the same deployment (spread: one host's
   loss takes as few of a deployment's replicas as possible), then the most free memory, then
   the fewest committed vCPUs per CPU, then the name (so the choice is reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass

OVERCOMMIT = 4.0  # vCPUs per physical CPU a host may be given


@dataclass(frozen=True)
class HostLoad:
    name: str
    up: bool
    maintenance: bool
    cpus: int
    memory_mb: int
    committed_vcpus: int
    committed_mb: int
    vms: int
    same_deployment: int = 0  # replicas of the VM's own deployment already there

    @property
    def free_mb(self) -> int:
        return self.memory_mb - self.committed_mb


class NoRoom(Exception):
    """No host can take the VM; the message says why each one cannot."""


def choose(hosts: list[HostLoad], vcpus: int, memory_mb: int,
           exclude: frozenset[str] = frozenset()) -> str:
    why: list[str] = []
    fit = []
    for h in hosts:
        if h.name in exclude:
            continue
        if not h.up:
            why.append(f"{h.name} does not answer")
        elif h.maintenance:
            why.append(f"{h.name} is in maintenance")
        elif h.free_mb < memory_mb:
            why.append(f"{h.name} has {h.free_mb} MiB free, the VM needs {memory_mb}")
        elif h.committed_vcpus + vcpus > OVERCOMMIT * h.cpus:
            why.append(f"{h.name} has {h.committed_vcpus} of {int(OVERCOMMIT * h.cpus)} vCPUs "
                       "committed")
        else:
            fit.append(h)
    if not fit:
        raise NoRoom("no host can take it: " + ("; ".join(why) or "no other host"))
    best = min(fit, key=lambda h: (h.same_deployment, -h.free_mb,
                                   h.committed_vcpus / max(1, h.cpus), h.name))
    return best.name
