"""onepane killed (`kill -9`) in each phase of a host evacuation (issue 28).

A VM serves a deployment from one of two hypervisor hosts reached over TLS; its host is put in
maintenance through the API, and onepane is killed while the move is in its disk mirror, in its
memory copy, and right after the destination runs the guest. libvirt finishes or abandons the
move on its own; the restarted onepane must find the guest running exactly once, route to that
copy, finish the evacuation (its job resumes), and serve every request after its restart.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from onepane.providers.vm.hostlab import HostLab, host_lab
from onepane.providers.vm.provider import _libvirt
from onepane.traffic.drill import Load
from tests.conftest import Server
from tests.e2e.test_cli import cli
from tests.helpers import wait_for

pytestmark = pytest.mark.root
HOSTS = {"k1": 219, "k2": 220}
PHASES = ("mirror", "memory", "switchover")


def ok(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else r.stdout


@pytest.fixture(scope="module")
def lab() -> Iterator[HostLab]:
    with host_lab(HOSTS) as lab:
        yield lab


def config(lab: HostLab) -> str:
    spec = ", ".join(f'{{ name = "{h.name}", uri = "{h.uri}" }}' for h in lab.hosts)
    creds = ", ".join(f"{k} = {json.dumps(v)}" for k, v in lab.credentials().items())
    return (f'sync_interval = 0.5\n[locations.dc-k]\nprovider = "vm"\n'
            f"options = {{ hosts = [{spec}] }}\ncredentials = {{ {creds} }}\n")


def copies(lab: HostLab, instance: str) -> dict[str, tuple[int, int]]:
    """host -> (state, reason) of every copy of the guest, read through each host's own socket
    (the test's view, not onepane's)."""
    lv = _libvirt()
    out = {}
    for h in lab.hosts:
        conn = lv.open(h.hypervisor.uri)
        try:
            out[h.name] = tuple(conn.lookupByName(instance).state())
        except lv.libvirtError:
            pass
        finally:
            conn.close()
    return out  # type: ignore[return-value]


def running_on(lab: HostLab, instance: str) -> list[str]:
    lv = _libvirt()
    return [h for h, (state, _) in copies(lab, instance).items() if state == lv.VIR_DOMAIN_RUNNING]


def phase_of(lab: HostLab, host: str, instance: str) -> str | None:
    """Where the move of `instance` off `host` is: its source's job statistics, and whether
    the destination runs it."""
    lv = _libvirt()
    other = next(h for h in lab.hosts if h.name != host)
    if running_on(lab, instance) == [other.name]:
        return "switchover"
    src = next(h for h in lab.hosts if h.name == host)
    conn = lv.open(src.hypervisor.uri)
    try:
        stats = conn.lookupByName(instance).jobStats()
    except lv.libvirtError:
        return None
    finally:
        conn.close()
    if (stats.get("memory_processed") or 0) > 0:
        return "memory"
    if (stats.get("disk_processed") or 0) > 0:
        return "mirror"
    return None


def test_a_kill_9_in_each_phase_of_an_evacuation_leaves_one_running_copy(
        lab: HostLab, guest_disk: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("crashstate")
    server = Server(state, config(lab))
    load: Load | None = None
    try:
        img = ok(cli(server, "-o", "json", "images", "import", str(guest_disk), "--name", "g"))
        ok(cli(server, "images", "replicate", img["id"], "--to", "dc-k"))
        spec = tmp_path_factory.mktemp("spec") / "web.yaml"
        spec.write_text(f"name: web-k\nimage: {img['id']}\nsize: vm.small\nreplicas: {{dc-k: 1}}\n"
                        "health: {path: /, interval: 0.5}\nattempt_timeout: 30\n")
        ok(cli(server, "deployments", "apply", "-f", str(spec)))
        dep = wait_for(lambda: (d := ok(cli(server, "-o", "json", "deployments", "show", "web-k")))
                       and (d["status"].get("locations") or {}).get("dc-k", {}).get("healthy") == 1
                       and d, 240, what="the VM serving")
        (inst,) = ok(cli(server, "-o", "json", "instances", "list", "--tag",
                         "onepane:deployment=web-k"))
        vm, address = inst["id"], inst["addresses"][0]
        load = Load(f"http://{dep['listen']}/").start()
        for phase in PHASES:
            (here,) = running_on(lab, vm)
            api = httpx.Client(base_url=server.url, timeout=10,
                               headers={"Authorization": f"Bearer {server.token}"})
            r = api.post(f"/v1/locations/dc-k/hosts/{here}/maintenance", json={})
            assert r.status_code == 202, r.text
            wait_for(lambda h=here: phase_of(lab, h, vm) == phase, 60, interval=0.005,  # noqa: B023
                     what=f"the move in its {phase} phase")
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            server = Server(state, config(lab))
            restarted = time.monotonic()
            # exactly one running copy, wherever libvirt left it, and no paused leftover
            wait_for(lambda: len(running_on(lab, vm)) == 1 and len(copies(lab, vm)) == 1, 60,
                     what=f"{phase}: one copy of the guest")
            (there,) = running_on(lab, vm)
            route = subprocess.run(["ip", "route", "get", address], capture_output=True,
                                   text=True).stdout
            host_address = next(h.address for h in lab.hosts if h.name == there)
            assert f"via {host_address}" in route, (phase, route)
            # the evacuation job resumed and finished: the host is empty (the guest moved) —
            # unless libvirt had abandoned the move and the job could not run it again yet
            wait_for(lambda h=here: running_on(lab, vm) != [h], 120,
                     what=f"{phase}: the evacuation finished after the restart")
            ok(cli(server, "hosts", "activate", "dc-k", here))
            late = [s for s in load.failures() if s.start > restarted + 1.0]
            assert late == [], (phase, late[:3])
        assert len(load.snapshot()) > 100
    finally:
        if load is not None:
            load.stop()
        server.stop()
