"""The declared host placement policy (onepane.providers.vm.placement)."""

from __future__ import annotations

import pytest

from onepane.providers.vm.placement import HostLoad, NoRoom, choose


def host(name: str, free: int = 1000, vcpus: int = 0, same: int = 0, up: bool = True,
         maintenance: bool = False) -> HostLoad:
    return HostLoad(name, up, maintenance, cpus=2, memory_mb=4096, committed_vcpus=vcpus,
                    committed_mb=4096 - free, vms=vcpus, same_deployment=same)


def test_spread_first_then_free_memory_then_name() -> None:
    assert choose([host("a", 3000, same=1), host("b", 500)], 1, 256) == "b"  # spread wins
    assert choose([host("a", 1000), host("b", 2000)], 1, 256) == "b"  # then memory
    assert choose([host("b", 1000), host("a", 1000)], 1, 256) == "a"  # then the name
    assert choose([host("a", 1000, vcpus=4), host("b", 1000, vcpus=1)], 1, 256) == "b"


def test_no_room_says_why_for_each_host() -> None:
    hosts = [host("a", up=False), host("b", maintenance=True), host("c", free=100),
             host("d", vcpus=8), host("e")]
    assert choose(hosts, 1, 256) == "e"
    with pytest.raises(NoRoom) as err:
        choose(hosts, 1, 256, exclude=frozenset({"e"}))
    text = str(err.value)
    for why in ("a does not answer", "b is in maintenance", "c has 100 MiB free",
                "d has 8 of 8 vCPUs"):
        assert why in text
