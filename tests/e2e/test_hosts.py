"""A vm location of three hypervisor hosts that onepane reaches only over the network (issue 28).

Each host is a namespace with its own mount namespace, its own libvirtd listening on TLS (with
certificates the test makes) and its own disks (onepane.providers.vm.hostlab). Through a real
`onepane up` and its CLI: a deployment's two replicas land on two hosts and a VM of no
deployment on the third (placement); the host of one replica is emptied for maintenance under
HTTP load through the data plane, with one long response open across the move: no request
fails, the response completes, the host is left empty and takes nothing new; a host that still
holds VMs cannot be removed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from onepane.providers.vm.hostaddresses import table_name
from onepane.providers.vm.hostlab import HostLab, host_lab
from onepane.traffic.drill import LongResponse
from tests.conftest import Server
from tests.e2e.test_cli import cli
from tests.e2e.test_vm import Load, http_get
from tests.helpers import ok, wait_for

pytestmark = pytest.mark.root
HOSTS = {"h1": 214, "h2": 215, "h3": 216}
STORAGE = ("st", 217)
DEAD_AFTER_S = 4



@pytest.fixture(scope="module")
def hosts() -> Iterator[HostLab]:
    with host_lab(HOSTS, storage=STORAGE) as lab:  # TLS: onepane's certificate in credentials
        yield lab


@pytest.fixture(scope="module")
def server(hosts: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    spec = ", ".join(f'{{ name = "{h.name}", uri = "{h.uri}" }}' for h in hosts.hosts)
    creds = ", ".join(f"{k} = {json.dumps(v)}" for k, v in hosts.credentials().items())
    assert hosts.storage is not None
    storage = ", ".join(f"{k} = {json.dumps(v)}" for k, v in hosts.storage.options().items())
    config = (f'sync_interval = 0.5\n[locations.dc-h]\nprovider = "vm"\n'
              f"options = {{ hosts = [{spec}], storage = {{ {storage} }}, "
              f"host_dead_after = {DEAD_AFTER_S} }}\ncredentials = {{ {creds} }}\n")
    server = Server(tmp_path_factory.mktemp("hoststate"), config)
    try:
        yield server
    finally:
        server.stop()


def host_rows(server: Server) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in ok(cli(server, "-o", "json", "hosts", "list", "dc-h"))}


def host_of(server: Server, instance: str) -> str | None:
    return next((h for h, row in host_rows(server).items()
                 if instance in row.get("instances", [])), None)


def instances(server: Server, *args: str) -> list[dict[str, Any]]:
    return list(ok(cli(server, "-o", "json", "instances", "list", *args)))


@pytest.fixture(scope="module")
def img(server: Server, guest_disk: Path) -> dict[str, Any]:
    """The test guest, in the catalog and on the hosts (and the network storage)."""
    image = ok(cli(server, "-o", "json", "images", "import", str(guest_disk), "--name", "guest"))
    ok(cli(server, "images", "replicate", image["id"], "--to", "dc-h"))
    return dict(image)


def console_hosts(page: Page, server: Server) -> Page:
    """The console's Hosts page, logged in with the server's token."""
    page.goto(server.url + "/")
    page.fill("#token", server.token)
    page.click("#login-form button")
    page.goto(server.url + "/#/hosts")
    expect(page.locator("main[data-ready='#/hosts']")).to_be_attached()
    return page


def test_placement_and_a_maintenance_evacuation_under_load(server: Server, img: dict[str, Any],
                                                          hosts: HostLab, tmp_path: Path,
                                                          page: Page) -> None:
    assert {h["state"] for h in host_rows(server).values()} == {"up"}
    spec = tmp_path / "web.yaml"
    spec.write_text(f"name: web-h\nimage: {img['id']}\nsize: vm.tiny\nreplicas: {{dc-h: 2}}\n"
                    "health: {path: /, interval: 0.5, timeout: 1.0}\nattempt_timeout: 30\n")
    ok(cli(server, "deployments", "apply", "-f", str(spec)))

    def serving() -> dict[str, Any] | None:
        dep = ok(cli(server, "-o", "json", "deployments", "show", "web-h"))
        where = (dep["status"].get("locations") or {}).get("dc-h", {})
        return dep if where.get("healthy") == 2 else None
    dep = wait_for(serving, 240, what="both replicas serving")

    # placement: the deployment's replicas on two hosts, a VM of no deployment on the third
    replicas = instances(server, "--tag", "onepane:deployment=web-h")
    on = {host_of(server, i["id"]) for i in replicas}
    assert len(on) == 2, replicas
    (empty,) = set(HOSTS) - on
    assert host_rows(server)[empty]["vms"] == 0
    solo = ok(cli(server, "-o", "json", "instances", "create", "solo", "--location", "dc-h",
                  "--image", img["id"], "--size", "vm.tiny", "--wait"))
    assert host_of(server, solo["target"]) == empty
    ok(cli(server, "instances", "destroy", solo["target"], "--wait"))

    # an elastic address reaches the replica on its host (rewritten on onepane's machine to
    # the guest's own address, which is routed to the host that runs it)
    eip = ok(cli(server, "-o", "json", "addresses", "allocate"))
    ok(cli(server, "addresses", "associate", eip["id"], "--instance", replicas[0]["id"]))
    own = f"ip={replicas[0]['addresses'][0]}/24"
    assert own in wait_for(lambda: http_get(f"http://{eip['public_ip']}/cgi-bin/state", 5), 30,
                           what="the replica through its elastic address")

    # maintenance of one replica's host, under load, with a long response open across it
    victim = host_of(server, replicas[0]["id"])
    assert victim is not None
    host, port = dep["listen"].rsplit(":", 1)
    load, stream = Load(f"http://{dep['listen']}/"), LongResponse(host, int(port), 80)
    load.start()
    stream.start()
    wait_for(lambda: load.ok >= 20, 30, what="load flowing")
    r = cli(server, "hosts", "maintenance", "dc-h", victim)
    assert r.returncode == 0, r.stderr
    assert replicas[0]["id"] in r.stdout  # the timeline names the moved VM
    wait_for(lambda: load.ok >= 60, 30, what="load after the evacuation")
    load.stop.set()
    load.join(15)
    stream.join(30)
    assert load.failed == [], load.failed[:5]
    assert stream.error is None and stream.body.rstrip().endswith("end"), stream.error

    rows = host_rows(server)
    assert rows[victim]["state"] == "maintenance" and rows[victim]["vms"] == 0
    assert host_of(server, replicas[0]["id"]) not in (None, victim)
    moved = next(i for i in instances(server, "--tag", "onepane:deployment=web-h")
                 if i["id"] == replicas[0]["id"])
    assert moved["state"] == "running" and moved["addresses"] == replicas[0]["addresses"]
    # same address, answering (a loaded machine: the first try may time out)
    wait_for(lambda: http_get(f"http://{moved['addresses'][0]}/", 5), 30,
             what="the moved VM answering at its address")
    # ...and at its elastic address, which followed it to its new host
    assert own in wait_for(lambda: http_get(f"http://{eip['public_ip']}/cgi-bin/state", 5), 30,
                           what="the moved VM through its elastic address")
    ok(cli(server, "addresses", "disassociate", eip["id"]))
    wait_for(lambda: http_get(f"http://{eip['public_ip']}/cgi-bin/state", 2) is None, 15,
             what="the address reaching nothing once disassociated")
    ok(cli(server, "addresses", "release", eip["id"]))
    assert table_name("dc-h") not in subprocess.run(["nft", "list", "tables"],
                                                    capture_output=True, text=True).stdout

    # security groups on the hosts: libvirt's network filter of the guest, defined on every
    # host; the guest's answers to what no rule allows are dropped, so nothing connects
    from tests.e2e.test_ec2_api import access_key, ec2_client
    ec2 = ec2_client(server, access_key(server))
    gid = ec2.create_security_group(GroupName="hosted", Description="hosted")["GroupId"]
    url = f"http://{moved['addresses'][0]}/"
    ec2.modify_instance_attribute(InstanceId="i-" + moved["id"].split("-", 1)[1], Groups=[gid])
    wait_for(lambda: http_get(url, 1) is None, 30, what="no ingress rule: nothing connects")
    filters = {h.name: hosts.connect(h).listNWFilters() for h in hosts.hosts}
    assert all(f"onepane-{moved['provider_id']}" in names for names in filters.values()), filters
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.200.0.0/16"}]}])
    def seen() -> str:  # the filter as each host has it (over TLS, as onepane sees it)
        name = f"onepane-{moved['provider_id']}"
        rules = [hosts.connect(h).nwfilterLookupByName(name).XMLDesc(0) for h in hosts.hosts]
        log = server.log_path.read_text(errors="replace")
        return "\n".join(r[-3000:] for r in rules) + "\nLOG:" + "\n".join(
            ln for ln in log.splitlines() if "security" in ln or "filter" in ln)[-3000:]
    wait_for(lambda: http_get(url, 1), 30, what="port 80 allowed: the guest answers again",
             explain=seen)
    # a host that joins later gets every guest's filter with no change to the groups (here: an
    # empty host taken out, its filters removed as on a fresh host, and added again)
    fname = f"onepane-{moved['provider_id']}"
    spare = next(h for h in hosts.hosts if not hosts.connect(h).listAllDomains())
    ok(cli(server, "hosts", "remove", "dc-h", spare.name))
    hosts.connect(spare).nwfilterLookupByName(fname).undefine()
    ok(cli(server, "hosts", "add", "dc-h", spare.name, "--uri", spare.uri))
    wait_for(lambda: fname in hosts.connect(spare).listNWFilters(), 15,
             what="the returning host given the guest's filter")
    kinds = [e["kind"] for e in ok(cli(server, "-o", "json", "events", "--kind", "host.",
                                       "--limit", "20"))]
    assert "host.moved" in kinds and "host.empty" in kinds

    # a host that holds VMs cannot leave; one in maintenance takes VMs again once activated
    keeper = next(h for h in on if h not in (None, victim))
    r = cli(server, "hosts", "remove", "dc-h", keeper)
    assert r.returncode != 0 and "empty it first" in " ".join(r.stderr.split())
    # the console's Hosts page shows the same, and its button takes the host back
    row = console_hosts(page, server).locator(f"tr[data-host='{victim}']")
    expect(row).to_have_attribute("data-state", "maintenance")
    row.get_by_role("button", name="activate").click()
    expect(page.locator(f"tr[data-host='{victim}']")).to_have_attribute("data-state", "up")
    assert host_rows(server)[victim]["state"] == "up"
    ok(cli(server, "deployments", "delete", "web-h"))
    wait_for(lambda: not instances(server, "--location", "dc-h"), 60, what="replicas gone")


def domains_named(hosts: HostLab, name: str) -> dict[str, bool]:
    """host -> whether it runs a domain of that name, over the network, for every host that
    answers (a cut host does not)."""
    out = {}
    for h in hosts.hosts:
        if h.net.is_cut():
            continue
        conn = hosts.connect(h)
        try:
            for dom in conn.listAllDomains():
                if dom.name() == name:
                    out[h.name] = bool(dom.isActive())
        finally:
            conn.close()
    return out


def test_a_dead_host_s_vm_runs_again_on_another_host_and_never_twice(
        server: Server, hosts: HostLab, img: dict[str, Any], page: Page) -> None:
    """Its libvirtd killed and its link cut: the host is declared dead, fenced, and its VM (its
    disk on the network storage) boots on another host at the same address; when the host
    comes back, its stale copy is destroyed before it takes VMs again."""
    vm = ok(cli(server, "-o", "json", "instances", "create", "ha", "--location", "dc-h",
                "--image", img["id"], "--size", "vm.tiny", "--wait"))["target"]
    address = next(i for i in instances(server) if i["id"] == vm)["addresses"][0]
    wait_for(lambda: http_get(f"http://{address}/", 2), 240, what="the VM answering")
    victim = host_of(server, vm)
    lab_host = next(h for h in hosts.hosts if h.name == victim)

    lab_host.kill_daemon()
    lab_host.cut("silent")
    try:
        def restarted() -> str | None:
            events = ok(cli(server, "-o", "json", "events", "--kind", "host.", "--limit", "50"))
            return next((e["data"]["to"] for e in events
                         if e["kind"] == "host.restarted" and e["subject"] == vm), None)
        new_host = wait_for(restarted, 120, what="the VM started on another host",
                            explain=lambda: ok(cli(server, "-o", "json", "events", "--limit",
                                                   "15")))
        assert new_host != victim
        wait_for(lambda: http_get(f"http://{address}/", 2), 240,
                 what="the VM answering at its address from its new host")
        assert domains_named(hosts, vm) == {new_host: True}  # one copy, where onepane says
        assert host_rows(server)[victim]["state"] == "fenced"
        row = console_hosts(page, server).locator(f"tr[data-host='{victim}']")
        expect(row).to_have_attribute("data-state", "fenced")
        kinds = [e["kind"] for e in ok(cli(server, "-o", "json", "events", "--kind", "host.",
                                           "--limit", "50"))]
        for kind in ("host.unreachable", "host.dead", "host.fenced", "host.restarted"):
            assert kind in kinds, kinds
    finally:
        lab_host.restore()
        lab_host.hypervisor.start()

    # back: the stale copy (its QEMU ran on through the cut) goes, then the host takes VMs
    wait_for(lambda: host_rows(server)[victim]["state"] == "up", 60, what="host readmitted")
    assert domains_named(hosts, vm) == {new_host: True}
    assert http_get(f"http://{address}/", 5) is not None
    ok(cli(server, "instances", "destroy", vm, "--wait"))
    assert domains_named(hosts, vm) == {}
