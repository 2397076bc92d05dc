"""What a move onepane died in the middle of leaves, settled at the next start
(HostMoves.reconcile_copies): logic over fake libvirt domains; the real drill is
tests/e2e/test_hosts_crash.py, which found a regression here that this catches in a second."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from onepane.errors import Conflict
from onepane.model import InstanceState
from onepane.providers.vm.domain import DomainSpec, domain_xml
from onepane.providers.vm.hostmoves import HostMoves
from onepane.providers.vm.libvirtcalls import _libvirt
from onepane.providers.vm.provider import observe_domain, refuse_moved_away


@dataclass
class FakeDomain:
    instance: str
    st: int
    why: int
    gone: list[str] = field(default_factory=list)

    def state(self) -> tuple[int, int]:
        return self.st, self.why

    def name(self) -> str:
        return self.instance

    def XMLDesc(self, _flags: int) -> str:
        return domain_xml(DomainSpec(name=self.instance, vcpus=1, memory_mb=128, disks=[],
                                     nics=[], console_log=Path("/dev/null"),
                                     metadata={"id": self.instance, "name": "web"}))

    def isActive(self) -> bool:
        return self.st != _libvirt().VIR_DOMAIN_SHUTOFF

    def destroy(self) -> None:
        self.st = _libvirt().VIR_DOMAIN_SHUTOFF

    def undefine(self) -> None:
        self.gone.append(self.instance)


class FakeHosts:
    """The part of a HostsProvider that reconcile_copies uses."""

    def __init__(self, doms: dict[str, list[FakeDomain]]) -> None:
        self.doms = doms
        self.routes: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.roster = self
        self.pools = self

    def up_hosts(self) -> list[str]:
        return list(self.doms)

    def domains(self, host: str) -> list[FakeDomain]:
        return self.doms[host]

    def route(self, host: str, instance: str, meta: Any = None) -> None:
        self.routes.append((host, instance))

    def delete_volumes(self, host: str, instance: str) -> None:
        self.deleted.append((host, instance))


def test_the_running_copy_stays_and_the_leftover_goes() -> None:
    lv = _libvirt()
    left = FakeDomain("inst-a", lv.VIR_DOMAIN_SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_MIGRATED)
    live = FakeDomain("inst-a", lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_RUNNING_MIGRATED)
    hosts = FakeHosts({"k1": [left], "k2": [live]})
    said = HostMoves(hosts).reconcile_copies()  # type: ignore[arg-type]
    assert said == ["inst-a: runs on k2; removed its leftover on k1"]
    assert left.gone == ["inst-a"] and live.gone == []
    assert hosts.routes == [("k2", "inst-a")] and hosts.deleted == [("k1", "inst-a")]


def test_two_running_copies_are_reported_never_guessed() -> None:
    lv = _libvirt()
    a = FakeDomain("inst-b", lv.VIR_DOMAIN_RUNNING, 1)
    b = FakeDomain("inst-b", lv.VIR_DOMAIN_RUNNING, 1)
    hosts = FakeHosts({"k1": [a], "k2": [b]})
    said = HostMoves(hosts).reconcile_copies()  # type: ignore[arg-type]
    assert said == ["inst-b: 2 running copies on k1, k2; left as they are"]
    assert a.gone == b.gone == [] and hosts.deleted == []


def test_what_a_finished_move_left_at_its_source_is_neither_stopped_nor_startable() -> None:
    """The CI drill once found two running copies: onepane died after libvirt finished a move
    between locations, the restarted sync saw the source's leftover as "stopped", and the
    failure policy started it while the guest ran at the destination."""
    lv = _libvirt()
    left = FakeDomain("inst-c", lv.VIR_DOMAIN_SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_MIGRATED)
    stopped = FakeDomain("inst-d", lv.VIR_DOMAIN_SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_SHUTDOWN)
    obs_left, obs_stopped = observe_domain(left), observe_domain(stopped)
    assert obs_left is not None and obs_left.state == InstanceState.unknown
    assert obs_stopped is not None and obs_stopped.state == InstanceState.stopped
    with pytest.raises(Conflict, match="moved live to another host"):
        refuse_moved_away(left)
    refuse_moved_away(stopped)  # an ordinary stopped VM starts
