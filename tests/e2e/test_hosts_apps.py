"""A three-tier application at vm locations of remote hypervisor hosts (issue 33 there): the
vApp-shaped OVA deployed with its network policy — enforced by each guest's libvirt network
filter, the only firewall a host reached over libvirt offers — and moved live, as one, to a
location of other hosts under load. Three emulated guests and three live moves with their
disks over TLS: a `slow` drill (`./test -m slow tests/e2e/test_hosts_apps.py`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import location_toml
from onepane.providers.vm.hostlab import HostLab, host_lab
from onepane.traffic.drill import Load
from tests.conftest import Server
from tests.e2e.test_applications import (
    TIERS,
    app_serving,
    chain_state,
    fail_naming_guest_panics,
    fetch,
    tier_addresses,
    tiers_policy_holds,
    vapp_ova,
)
from tests.e2e.test_cli import cli
from tests.helpers import ok, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]
HOSTS = {"ap1": 236, "ap2": 237}
LOCATIONS = {"apps-a": ("ap1",), "apps-b": ("ap2",)}


@pytest.fixture(scope="module")
def lab() -> Iterator[HostLab]:
    with host_lab(HOSTS) as lab:
        yield lab


@pytest.fixture(scope="module")
def server(lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = "sync_interval = 0.5\n" + "".join(
        location_toml(loc, "vm", {"hosts": [h.spec() for h in lab.hosts if h.name in names]},
                      lab.credentials())
        for loc, names in LOCATIONS.items())
    srv = Server(tmp_path_factory.mktemp("hostapps"), config)
    try:
        yield srv
    finally:
        srv.stop()


def test_an_application_keeps_its_policy_through_a_live_move_between_locations_of_hosts(
        server: Server, guest_disk: Path, tmp_path: Path) -> None:
    shop = ok(cli(server, "-o", "json", "images", "import", str(vapp_ova(tmp_path, guest_disk)),
                  "--name", "shop"))["appliance"]
    for tier in ok(cli(server, "-o", "json", "apps", "show", shop["id"]))["tiers"]:
        ok(cli(server, "images", "replicate", tier["image"], "--to", "apps-a"))
    ok(cli(server, "-o", "json", "apps", "deploy", shop["id"], "--name", "shop", "--at", "apps-a",
           "--size", "vm.small", "--attempt-timeout", "30", "--allow", "outside:shop-web:80",
           "--allow", "shop-web:shop-app:80", "--allow", "shop-app:shop-db:80"))

    status = wait_for(lambda: app_serving(server, "shop", "apps-a"), 420, interval=1,
                      what="every tier serving")
    ip = tier_addresses(status)
    web, mid, db = ip["shop-web"], ip["shop-app"], ip["shop-db"]

    def holds() -> bool:  # (no rule: the guest's answer is dropped, so nothing connects)
        try:
            tiers_policy_holds(web, mid, db, "deployed")
            return True
        except AssertionError:
            return False
    try:
        wait_for(holds, 30, what="the policy in force")
    except AssertionError:
        tiers_policy_holds(web, mid, db, "deployed")  # what does not hold, said
        raise

    chain = f"/cgi-bin/fetch?{mid}/cgi-bin/fetch?{db}/cgi-bin/state"
    before = fetch(web, chain.removeprefix("/cgi-bin/fetch?"))
    assert before is not None and "disk=" in before.text, before
    load = Load(f"http://{status['listen']}{chain}", clients=2, read=chain_state).start()
    try:
        wait_for(lambda: len(load.snapshot()) >= 5, 60, what="load flowing through all tiers")
        started = time.monotonic()
        moved = ok(cli(server, "-o", "json", "move", "shop", "--to", "apps-b", "--live"))
        assert moved["to"] == "apps-b" and moved["tiers"] == list(TIERS)
        wait_for(lambda: len([s for s in load.snapshot() if s.start > started]) >= 20, 120,
                 what="load after the move")
    finally:
        load.stop()
    after = ok(cli(server, "-o", "json", "apps", "status", "shop"))
    assert {i["location"] for t in after["tiers"] for i in t["instances"]} == {"apps-b"}
    assert tier_addresses(after) == ip  # the same VMs, with their addresses
    try:
        tiers_policy_holds(web, mid, db, "moved")
    except AssertionError as exc:
        fail_naming_guest_panics(server, str(exc))
        raise

    if load.failures():  # all of it said, with the move's timeline
        offset = time.time() - time.monotonic()
        timeline = [(e["ts"][11:23], e["kind"], e["subject"])
                    for e in ok(cli(server, "-o", "json", "events", "--limit", "80"))
                    if e["kind"].startswith(("move.", "app.", "traffic.", "replica."))]
        failed = "requests failed across the move: " + repr(
            [(time.strftime("%H:%M:%S", time.gmtime(f.start + offset)), round(f.end - f.start, 2),
              f.where[:160]) for f in load.failures()[:10]]) + "\ntimeline: " + "\n".join(
            map(repr, timeline))
        fail_naming_guest_panics(server, failed)
        pytest.fail(failed, pytrace=False)

    ok(cli(server, "apps", "undeploy", "shop"))
    wait_for(lambda: ok(cli(server, "-o", "json", "instances", "list")) == [], 180,
             what="the application's VMs gone")

