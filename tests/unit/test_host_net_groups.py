"""Every test file that makes namespaces, libvirt, Docker or DNS hosts on this machine is in
the one xdist group that runs them in turn (tests/conftest.py, HOST_NET): two such files at
once in two workers would take each other's location indexes and blackhole route."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import HOST_NET

ROOT = Path(__file__).resolve().parents[2]
# what such a file names: a namespace location, a lab of hosts, the data-center network
MAKES_HOST_NET = re.compile(r'provider = \\?"(netns|vm|docker)\\?"|\bhost_lab\b|\bdocker_lab\b|'
                            r"onepane\.lab\b|onepane\.dnslab\b|providers\.dcnet\b|"
                            r"\bVmProvider\b|\bNetnsProvider\b|\bCATCH_ALL\b|mark\.root\b")


def test_every_file_that_makes_host_networks_runs_in_the_host_net_group() -> None:
    found = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
             if p.name != "test_host_net_groups.py" and MAKES_HOST_NET.search(p.read_text())}
    assert found, "the pattern finds nothing: it no longer says what such a file names"
    assert found <= HOST_NET, sorted(found - HOST_NET)
