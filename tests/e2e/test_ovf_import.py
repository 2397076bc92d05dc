"""OVF packages as producers write them, through the CLI and API of a real onepane: deployment
options, properties set at boot (on EC2 on moto, as the OVF environment in the user data),
appliances, folders, gzip, warnings; and exports that an independent tool (the Common OVF Tool)
and qemu-img accept."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.e2e.test_cli import VENV_BIN, cli, config
from tests.integration.test_ovf_producers import descriptor, ova_of, vmdk


def said(r: subprocess.CompletedProcess[str]) -> str:
    """stderr as one line: Rich wraps long messages at the terminal width."""
    return " ".join(r.stderr.split())


def run_json(server: Any, *args: str) -> Any:
    r = cli(server, "-o", "json", *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return json.loads(r.stdout)


def test_producers_packages_end_to_end(start_server: Any, moto: str, tmp_path: Path) -> None:
    server = start_server("dns_port = 0\n" + config(moto))
    disk = vmdk(tmp_path, "csr-disk1.vmdk", size="16M")
    iso = b"\0" * 2048
    csr = ova_of(tmp_path, "csr", descriptor("cisco-csr1000v.ovf", disk1_size=disk.stat().st_size,
                                             iso_size=len(iso)),
                 {"csr-disk1.vmdk": disk, "csr-config.iso": iso}, manifest="sha1")

    # a deployment option picked at import: its CPUs, memory and NICs
    big = run_json(server, "images", "import", str(csr), "--name", "csr-big",
                   "--deployment-option", "4CPU-8GB")
    assert (big["cpus"], big["memory_mb"], len(big["networks"])) == (4, 8192, 3)
    img = run_json(server, "images", "import", str(csr), "--name", "csr")
    assert (img["cpus"], img["memory_mb"], img["deployment_option"]) == (2, 4096, "2CPU-4GB")
    assert [o["id"] for o in img["deployment_options"]] == ["1CPU-4GB", "2CPU-4GB", "4CPU-4GB",
                                                             "4CPU-8GB"]
    props = {p["key"]: p for p in img["properties"]}
    assert props["hostname"]["user_configurable"] and props["hostname"]["label"] == "Router Name"
    assert any("csr-config.iso" in w for w in img["warnings"])
    r = cli(server, "images", "import", str(csr), "--name", "x", "--deployment-option", "9CPU")
    assert r.returncode == 2 and "no deployment option '9CPU'" in said(r)
    shown = cli(server, "images", "show", img["id"])
    assert "4CPU-8GB" in shown.stdout and "Router Name" in shown.stdout

    # properties at boot: checked against their types, handed over as the OVF environment
    run_json(server, "images", "replicate", img["id"], "--to", "aws-us-east-1")
    r = cli(server, "instances", "create", "r1", "--location", "aws-us-east-1", "--image",
            img["id"], "--size", "t2.micro", "--property", "enable-ssh-server=maybe")
    assert r.returncode == 2 and "properties.enable-ssh-server" in said(r), r.stderr
    r = cli(server, "instances", "create", "r1", "--location", "dc-a", "--image", img["id"],
            "--size", "small")
    assert r.returncode == 2 and "cannot boot disk images" in said(r)  # a process location
    job = run_json(server, "instances", "create", "r1", "--location", "aws-us-east-1", "--image",
                   img["id"], "--size", "t2.micro", "--property", "hostname=edge-1",
                   "--property", "enable-ssh-server=TRUE", "--deployment-option", "4CPU-4GB")
    assert job["status"] == "succeeded"
    inst = run_json(server, "instances", "show", job["target"])
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    attr = ec2.describe_instance_attribute(InstanceId=inst["provider_id"], Attribute="userData")
    env = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert 'key="com.cisco.csr1000v.hostname.1" oe:value="edge-1"' in env
    assert 'key="com.cisco.csr1000v.enable-ssh-server.1" oe:value="true"' in env

    # --size auto: the smallest size that gives the option its CPUs and memory
    job = run_json(server, "instances", "create", "r2", "--location", "aws-us-east-1", "--image",
                   img["id"], "--size", "auto", "--deployment-option", "4CPU-8GB")
    chosen = run_json(server, "instances", "show", job["target"])["size"]
    sizes = {x["id"]: x for x in run_json(server, "locations", "sizes", "aws-us-east-1")}
    assert sizes[chosen]["cpu"] >= 4 and sizes[chosen]["memory_mb"] >= 8192
    assert not [x for x in sizes.values() if (x["cpu"] or 0) >= 4 and (x["memory_mb"] or 0) >= 8192
                and x["memory_mb"] < sizes[chosen]["memory_mb"]]

    # an appliance: every system of the collection, grouped
    web, db = vmdk(tmp_path, "web-disk.vmdk", size="8M"), vmdk(tmp_path, "db-disk.vmdk", size="8M")
    lamp = ova_of(tmp_path, "lamp", descriptor("collection-lamp.ovf", disk1_size=web.stat().st_size,
                                               disk2_size=db.stat().st_size),
                  {"web-disk.vmdk": web, "db-disk.vmdk": db})
    first = run_json(server, "images", "import", str(lamp), "--name", "lamp")
    members = first["appliance"]["members"]
    assert len(members) == 2 and first["appliance"]["collection"] == "LAMP"
    names = {i["name"]: i for i in run_json(server, "images", "catalog")}
    assert {"lamp-webtier", "lamp-dbtier"} <= set(names)
    assert names["lamp-dbtier"]["cpus"] == 2
    # an application's images go together: one member alone is refused, naming the other
    r = cli(server, "images", "delete", names["lamp-dbtier"]["id"])
    assert r.returncode == 4 and names["lamp-webtier"]["id"] in said(r), r.stderr
    deleted = run_json(server, "apps", "delete", first["appliance"]["id"])["deleted"]
    assert sorted(deleted) == sorted([names["lamp-webtier"]["id"], names["lamp-dbtier"]["id"]])
    left = {i["name"] for i in run_json(server, "images", "catalog")}
    assert not {"lamp-webtier", "lamp-dbtier"} & left
    blobs = {p.name for p in (server.state_dir / "blobs" / "sha256").iterdir()}
    assert not {d["sha256"] for i in names.values() if i["name"].startswith("lamp-")
                for d in i["disks"]} & blobs  # their disks left onepane's store
    lamp = ova_of(tmp_path, "lamp", descriptor("collection-lamp.ovf", disk1_size=web.stat().st_size,
                                               disk2_size=db.stat().st_size),
                  {"web-disk.vmdk": web, "db-disk.vmdk": db})
    members = run_json(server, "images", "import", str(lamp), "--name", "lamp")[
        "appliance"]["members"]
    assert len(members) == 2 and not set(members) & set(deleted)  # imported again, as new
    # an application: a vSphere vApp's three tiers, in the order its StartupSection gives
    disks = {f"shop-{t}-disk1.vmdk": vmdk(tmp_path, f"shop-{t}.vmdk", size="8M")
             for t in ("web", "app", "db")}
    vapp = ova_of(tmp_path, "shop", descriptor(
        "vsphere-vapp-3tier.ovf", **{f"{t}_size": disks[f"shop-{t}-disk1.vmdk"].stat().st_size
                                     for t in ("web", "app", "db")}), disks)
    shop = run_json(server, "images", "import", str(vapp), "--name", "shop")["appliance"]
    app = run_json(server, "apps", "show", shop["id"])
    assert [(t["system"], t["order"], t["start_delay"], t["waiting_for_guest"])
            for t in app["tiers"]] == [("shop-db", 0, 30, True), ("shop-app", 1, 10, False),
                                       ("shop-web", 2, 0, False)]
    assert [t["cpus"] for t in app["tiers"]] == [2, 1, 1] and app["tiers"][0]["disks"] == 1
    assert shop["id"] in {a["id"] for a in run_json(server, "apps", "list")}
    # deployed as one: bad input is refused naming the field, and leaves nothing behind (a
    # second try under the same name is judged on its own input, not refused as a duplicate)
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    for body, field in [({"replicas": {"nowhere": 1}}, "replicas.nowhere"),
                        ({"replicas": {"dc-a": 1}, "allow": [{"from": "10.0.0.0/33", "to": "shop-db"}]},
                         "allow.0.from"),
                        ({"replicas": {"dc-a": 1}, "allow": [{"from": "outside", "to": "nope"}]},
                         "allow.0.to"),
                        ({"replicas": {"dc-a": 1},  # no location of the app's carries it
                          "placement": {"shop-db": {"require": {"country": "nowhere"}}}},
                         "placement.shop-db"),
                        ({"replicas": {"dc-a": 1}, "placement": {"shop-nope": {"require": {}}}},
                         "placement"),
                        ({"replicas": {"dc-a": 1}, "keep_data": ["shop-nope"]}, "keep_data"),
                        # processes have no data disks to keep (vm locations do)
                        ({"replicas": {"dc-a": 1}, "keep_data": ["shop-db"]}, "storage.data")]:
        r = api.post("/v1/applications", json={"app": shop["id"], "name": "shop", **body})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    assert api.get("/v1/applications").json() == []
    assert not [d for d in api.get("/v1/deployments").json() if d["name"].startswith("shop")]
    assert api.post("/v1/applications/shop/move", json={"to": "dc-a"}).status_code == 404
    # exported as one OVA: a collection with its start order, in DSP0243's element order (COT
    # reads single systems only: it refuses every collection, DMTF's own examples included),
    # that imports back the same
    exported = tmp_path / "shop-export.ova"
    run_json(server, "apps", "export", shop["id"], "-o", str(exported))
    with tarfile.open(exported) as tar:
        names = tar.getnames()
        root = ET.fromstring(tar.extractfile(names[0]).read())  # type: ignore[union-attr]
    assert names[0].endswith(".ovf") and names[1].endswith(".mf")
    ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1"}
    coll = root.find("ovf:VirtualSystemCollection", ns)
    assert coll is not None and [c.tag.rsplit("}", 1)[1] for c in coll][:3] == [
        "Info", "Name", "StartupSection"]
    assert [vs.get(f"{{{ns['ovf']}}}id") for vs in coll.findall("ovf:VirtualSystem", ns)] == [
        "shop-db", "shop-app", "shop-web"]
    back = run_json(server, "images", "import", str(exported), "--name", "shop2")["appliance"]
    assert [(t["system"], t["order"], t["start_delay"], t["waiting_for_guest"])
            for t in run_json(server, "apps", "show", back["id"])["tiers"]] == \
        [(t["system"], t["order"], t["start_delay"], t["waiting_for_guest"]) for t in app["tiers"]]

    # the folder form, a gzip-compressed OVA, and a descriptor sent alone
    folder = tmp_path / "vbox"
    folder.mkdir()
    (folder / "ubuntu.ovf").write_text(descriptor("virtualbox-2.0.ovf"))
    shutil.copy(vmdk(tmp_path, "u.vmdk", size="8M"), folder / "ubuntu-disk001.vmdk")
    assert run_json(server, "images", "import", str(folder / "ubuntu.ovf"),
                    "--name", "vbox")["memory_mb"] == 512
    assert run_json(server, "images", "import", str(folder), "--name", "vbox2")["cpus"] == 1
    gz = tmp_path / "csr.ova.gz"
    gz.write_bytes(gzip.compress(csr.read_bytes()))
    assert run_json(server, "images", "import", str(gz), "--name", "csr-gz")["cpus"] == 2
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as h:
        r = h.post("/v1/catalog", params={"name": "alone"},
                   content=(folder / "ubuntu.ovf").read_bytes())
        assert r.status_code == 422 and "OVF descriptor without its files" in r.json()["detail"]
        bad = descriptor("cisco-csr1000v.ovf", disk1_size="12kB", iso_size=1)
        r = h.post("/v1/catalog", params={"name": "bad"},
                   content=ova_of(tmp_path, "bad", bad, {"csr-disk1.vmdk": disk}).read_bytes())
        assert r.status_code == 422 and "ovf:size '12kB'" in r.json()["detail"]
        assert r.json()["errors"][0]["field"] == "ovf"

    # a declared size that differs: imported with a warning the user sees, when a manifest verifies
    off = ova_of(tmp_path, "off", descriptor("cisco-csr1000v.ovf", disk1_size=disk.stat().st_size + 1,
                                             iso_size=len(iso)),
                 {"csr-disk1.vmdk": disk, "csr-config.iso": iso}, manifest="sha256")
    r = cli(server, "images", "import", str(off), "--name", "off")
    assert r.returncode == 0 and "warning:" in said(r) and "the descriptor says" in said(r)

    # exports: the Common OVF Tool reads them without error or tamper warning, SHA-1 manifest
    # first, disks streamOptimized (a monolithicSparse source is converted, not relabelled)
    legacy_disk = vmdk(tmp_path, "legacy-disk1.vmdk", "monolithicSparse", size="8M")
    legacy = ova_of(tmp_path, "legacy", descriptor("ovf-0.9-vmware.ovf",
                                                   disk1_size=legacy_disk.stat().st_size),
                    {"legacy-disk1.vmdk": legacy_disk})
    legacy_img = run_json(server, "images", "import", str(legacy), "--name", "legacy")
    for image_id in (img["id"], legacy_img["id"], members[1]):
        out = tmp_path / f"{image_id}.ova"
        assert cli(server, "images", "export", image_id, "-o", str(out)).returncode == 0
        with tarfile.open(out) as tar:
            names_in = tar.getnames()
            assert names_in[0].endswith(".ovf") and names_in[1].endswith(".mf")
            manifest = tar.extractfile(names_in[1]).read().decode()  # type: ignore[union-attr]
            assert manifest.startswith("SHA1(")
            tar.extractall(tmp_path / f"x-{image_id}", filter="data")
        for member in names_in[2:]:
            info = json.loads(subprocess.run(
                ["qemu-img", "info", "-f", "vmdk", "--output=json", str(tmp_path / f"x-{image_id}" / member)],
                capture_output=True, text=True, check=True).stdout)
            assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
        cot = subprocess.run([str(VENV_BIN / "cot"), "info", "-v", str(out)], capture_output=True,
                             text=True)
        assert cot.returncode == 0, cot.stderr
        assert "WARNING" not in cot.stderr + cot.stdout and "ERROR" not in cot.stderr, cot.stderr
    again = run_json(server, "images", "import", str(tmp_path / f"{img['id']}.ova"), "--name", "rt")
    assert (again["deployment_options"], again["deployment_option"]) == (
        img["deployment_options"], img["deployment_option"])
    assert [(p["id"], p["type"], p["user_configurable"]) for p in again["properties"]] == [
        (p["id"], p["type"], p["user_configurable"]) for p in img["properties"]]
    r = cli(server, "images", "export", members[1], "-o", str(tmp_path / "db.vhdx"), "--format",
            "vhdx")
    assert r.returncode == 0  # one file disk (the data disk is blank): one vhdx
    # two file-backed disks do not fit one vhdx: refused, not half exported
    two = descriptor("collection-lamp.ovf", disk1_size=web.stat().st_size,
                     disk2_size=db.stat().st_size).replace(
        '<Disk ovf:diskId="dbdata" ovf:capacity="${db.data.size}"',
        '<Disk ovf:diskId="dbdata" ovf:fileRef="web" ovf:capacity="${db.data.size}"')
    pair = run_json(server, "images", "import", str(ova_of(
        tmp_path, "two", two, {"web-disk.vmdk": web, "db-disk.vmdk": db})), "--name", "two")
    db_image = pair["appliance"]["members"][1]
    assert len(run_json(server, "images", "show", db_image)["disks"]) == 2
    r = cli(server, "images", "export", db_image, "-o", str(tmp_path / "two.vhdx"), "--format",
            "vhdx")
    assert r.returncode == 2 and "export it as an OVA" in said(r)
    assert not (tmp_path / "two.vhdx").exists() or (tmp_path / "two.vhdx").stat().st_size == 0
