"""Two onepane nodes on separate state directories (and one PostgreSQL) drive the same
hypervisor hosts (issue 28): nothing of a host lives in a node's state directory — the domains
are the records, images and the maintenance mark live in the hosts' own storage pools — so a VM
placed through one node is moved by the other after the first is killed."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from onepane.providers.vm.hostlab import HostLab, host_lab
from tests.conftest import Server
from tests.e2e.test_cli import cli
from tests.e2e.test_crash_drill import fresh_database
from tests.helpers import ok, wait_for

pytestmark = pytest.mark.root
HOSTS = {"m1": 227, "m2": 228}



@pytest.fixture(scope="module")
def lab() -> Iterator[HostLab]:
    with host_lab(HOSTS) as lab:
        yield lab


def test_two_nodes_with_their_own_state_directories_drive_the_same_hosts(
        lab: HostLab, postgres_url: str, guest_disk: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # one key for the location's credentials, as nodes of one installation share it
    monkeypatch.setenv("ONEPANE_SECRET_KEY", Fernet.generate_key().decode())
    url = fresh_database(postgres_url, "onepane_hosts_nodes")
    hosts = ", ".join(f'{{ name = "{h.name}", uri = "{h.uri}" }}' for h in lab.hosts)
    creds = ", ".join(f"{k} = {json.dumps(v)}" for k, v in lab.credentials().items())
    common = (f'database_url = "{url}"\nsync_interval = 0.5\nnode_timeout = 1.5\n'
              f'[locations.dc-m]\nprovider = "vm"\noptions = {{ hosts = [{hosts}] }}\n'
              f"credentials = {{ {creds} }}\n")
    n1 = Server(tmp_path / "s1", 'node_name = "n1"\n' + common)
    (tmp_path / "s2").mkdir()
    shutil.copy(tmp_path / "s1" / "admin.token", tmp_path / "s2" / "admin.token")
    n2 = Server(tmp_path / "s2", 'node_name = "n2"\n' + common)
    try:
        img = ok(cli(n1, "-o", "json", "images", "import", str(guest_disk), "--name", "g"))
        ok(cli(n1, "images", "replicate", img["id"], "--to", "dc-m"))
        # the other node sees the image (it is on the hosts) and places a VM with it
        job = ok(cli(n2, "-o", "json", "instances", "create", "vm1", "--location", "dc-m",
                     "--image", img["id"], "--size", "vm.tiny"))
        vm = job["target"]
        rows = {h["name"]: h for h in ok(cli(n1, "-o", "json", "hosts", "list", "dc-m"))}
        (here,) = [h for h, row in rows.items() if vm in row.get("instances", [])]
        # the first node dies; the second empties the VM's host
        n1.proc.send_signal(signal.SIGKILL)
        n1.proc.wait(10)
        wait_for(lambda: any(n["name"] == "n2" and n["role"] == "leader"
                             for n in ok(cli(n2, "-o", "json", "status"))["nodes"]), 30,
                 what="n2 leading")
        ok(cli(n2, "hosts", "maintenance", "dc-m", here))
        rows = {h["name"]: h for h in ok(cli(n2, "-o", "json", "hosts", "list", "dc-m"))}
        assert rows[here]["state"] == "maintenance" and rows[here]["vms"] == 0
        (there,) = [h for h, row in rows.items() if vm in row.get("instances", [])]
        assert there != here
        ok(cli(n2, "instances", "destroy", vm))
    finally:
        for s in (n1, n2):
            if s.proc.poll() is None:
                s.stop()
