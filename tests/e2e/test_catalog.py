"""Image portability end to end: import an OVA through the CLI, replicate it to two data
centers and EC2 on moto's server, boot it where it can run, export it again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3

from onepane.images import disk, ova
from tests.e2e.test_cli import cli, config
from tests.integration.test_images import VMWARE, make_disk, pack


def test_import_replicate_boot_export(start_server: Any, moto: str, tmp_path: Path) -> None:
    server = start_server("dns_port = 0\n" + config(moto))
    src = make_disk(tmp_path)
    vmdk = tmp_path / "disk1.vmdk"
    disk.convert(src, vmdk, "vmdk", "qcow2")
    archive = pack(tmp_path, "web01", VMWARE.format(size=vmdk.stat().st_size), {"disk1.vmdk": vmdk})

    r = cli(server, "-o", "json", "images", "import", str(archive), "--name", "web01")
    assert r.returncode == 0, r.stderr
    img = json.loads(r.stdout)
    assert (img["cpus"], img["memory_mb"], img["source"]) == (2, 2048, "ova")
    # the same disk again is stored once
    r = cli(server, "-o", "json", "images", "import", str(archive), "--name", "web01",
            "--version", "2")
    blobs = list((server.state_dir / "blobs" / "sha256").iterdir())
    assert len(blobs) == 1
    # the same content under the same name and version is the image already there
    r = cli(server, "-o", "json", "images", "import", str(archive), "--name", "web01")
    assert r.returncode == 0, r.stderr
    assert (json.loads(r.stdout)["id"], json.loads(r.stdout)["reused"]) == (img["id"], True)
    assert not img["reused"]

    r = cli(server, "-o", "json", "images", "replicate", img["id"], "--to",
            "dc-a,dc-b,aws-us-east-1")
    assert r.returncode == 0, r.stdout + r.stderr
    reps = {x["location"]: x for x in json.loads(r.stdout)["replicas"]}
    assert {k: v["state"] for k, v in reps.items()} == dict.fromkeys(
        ("aws-us-east-1", "dc-a", "dc-b"), "ready")
    assert reps["dc-a"]["format"] == "qcow2" and reps["aws-us-east-1"]["format"] == "vmdk"
    # ready everywhere, bootable only where a VM can run it, and the catalog says why
    assert reps["aws-us-east-1"]["bootable"] and not reps["dc-a"]["bootable"]
    assert "runs processes, not VMs" in reps["dc-a"]["not_bootable_because"]
    r = cli(server, "instances", "create", "nope", "--location", "dc-a", "--image", img["id"],
            "--size", "small")
    assert r.returncode == 2 and "cannot boot disk images" in r.stderr, r.stderr
    local = server.state_dir / "locations" / "dc-a" / "vm-images" / reps["dc-a"]["provider_image_id"]
    assert disk.identical(src, "qcow2", local, "qcow2")  # checksummed on the way, compared here by content
    ami = reps["aws-us-east-1"]["provider_image_id"]
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["State"] == "available"
    # replicating again is a no-op: same provider image
    r = cli(server, "-o", "json", "images", "replicate", img["id"], "--to", "aws-us-east-1")
    assert {x["location"]: x["provider_image_id"] for x in json.loads(r.stdout)["replicas"]}[
        "aws-us-east-1"] == ami

    # boot it where it can run: EC2
    r = cli(server, "-o", "json", "instances", "create", "from-ova", "--location",
            "aws-us-east-1", "--image", ami, "--size", "t2.micro")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "succeeded", r.stderr
    booted = json.loads(r.stdout)["target"]

    # export: an OVA that re-imports to the same hardware and the same disk contents
    out = tmp_path / "export.ova"
    assert cli(server, "images", "export", img["id"], "-o", str(out)).returncode == 0
    again = ova.read_ova(out, tmp_path / "again")
    vs = again.descriptor.systems[0]
    assert (vs.cpus, vs.memory_bytes) == (2, 2048 * 2**20)
    assert disk.identical(src, "qcow2", again.directory / "web01-disk1.vmdk", "vmdk")
    qcow = tmp_path / "export.qcow2"
    assert cli(server, "images", "export", img["id"], "-o", str(qcow), "--format",
               "qcow2").returncode == 0
    assert disk.info(qcow, "qcow2").format == "qcow2" and disk.identical(src, "qcow2", qcow, "qcow2")

    # bad input through the API: nothing is kept
    bad = tmp_path / "bad.ova"
    bad.write_bytes(b"not an archive at all")
    r = cli(server, "images", "import", str(bad), "--name", "bad")
    assert r.returncode == 2
    assert len(json.loads(cli(server, "-o", "json", "images", "catalog").stdout)) == 2
    r = cli(server, "images", "replicate", img["id"], "--to", "nowhere")
    assert r.returncode == 3

    # deleted: refused while the instance made from it lives (nothing removed), then off
    # every location and, once no image has its content, off onepane's store
    r = cli(server, "images", "delete", img["id"])
    assert r.returncode == 4 and "in use" in r.stderr, r.stderr
    assert local.exists() and ec2.describe_images(ImageIds=[ami])["Images"]
    assert cli(server, "instances", "destroy", booted).returncode == 0
    r = cli(server, "-o", "json", "images", "delete", img["id"])
    assert r.returncode == 0, r.stderr
    assert not local.exists()
    assert not ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "image-id", "Values": [ami]}])["Images"]
    assert cli(server, "images", "show", img["id"]).returncode == 3
    assert len(list((server.state_dir / "blobs" / "sha256").iterdir())) == 1  # version 2's
    other = next(i for i in json.loads(cli(server, "-o", "json", "images", "catalog").stdout)
                 if i["name"] == "web01")
    assert cli(server, "images", "delete", other["id"]).returncode == 0
    assert not list((server.state_dir / "blobs" / "sha256").iterdir())


def test_the_reported_leak_is_refused_and_leaves_nothing(start_server: Any, moto: str,
                                                         tmp_path: Path) -> None:
    """The issue's reproduction: a qcow2 backed by a server file, and a VMDK descriptor whose
    extent names one, plain and inside an OVA. Each is a 422 naming the trick; no catalog
    entry, no blob, no scratch folder is left."""
    server = start_server("dns_port = 0\n" + config(moto))
    leak = tmp_path / "leak.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname",
                    str(leak), "1M"], check=True)
    extent = tmp_path / "extent.vmdk"
    extent.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                      'createType="monolithicFlat"\n\nRW 2048 FLAT "/etc/hostname" 0\n')
    plain = [(leak, "backing file"), (extent, "VMDK descriptor")]
    in_ova = [(pack(tmp_path, f"x-{f.stem}", VMWARE.format(size=f.stat().st_size),
                    {"disk1.vmdk": f}), match) for f, match in plain]
    for path, match in plain + in_ova:
        r = cli(server, "images", "import", str(path), "--name", "leak")
        assert r.returncode == 2, (path, r.stdout, r.stderr)
        message = " ".join(r.stderr.split())  # Rich wraps at the terminal width
        assert match in message and "refused" in message, r.stderr
    assert json.loads(cli(server, "-o", "json", "images", "catalog").stdout) == []
    blobs = server.state_dir / "blobs"
    assert not list((blobs / "sha256").iterdir())
    assert not [p for p in blobs.iterdir() if p.name.startswith(".")]  # no scratch left


def test_big_uploads_are_bounded_shown_and_abandoned_cleanly(start_server: Any,
                                                             tmp_path: Path) -> None:
    """Issue 31: a size limit refused up front (413, exit 2, nothing read), progress for
    people and none in JSON, and an upload whose client goes away stops there: no scratch file
    left, no traceback in the server's log."""
    import socket

    from tests.helpers import wait_for
    server = start_server(f"dns_port = 0\nmax_image_bytes = {4 * 2**20}\n")
    big = tmp_path / "big.raw"
    with big.open("wb") as f:
        f.truncate(8 * 2**20)
    r = cli(server, "images", "import", str(big), "--name", "big")
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "larger than" in said and str(4 * 2**20) in said, r.stderr
    small = make_disk(tmp_path, "small.qcow2", size_mib=8)  # 2 MiB of content: under the limit
    r = cli(server, "-o", "json", "images", "import", str(small), "--name", "small")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "small", r.stderr
    assert "uploading" not in r.stderr  # JSON output: no progress bar

    # a client that sends half its body and goes away
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"POST /v1/catalog?name=gone HTTP/1.1\r\nHost: {host}\r\nAuthorization: "
                  f"Bearer {server.token}\r\nContent-Type: application/octet-stream\r\n"
                  f"Content-Length: {3 * 2**20}\r\n\r\n".encode() + b"\0" * 2**20)
        blobs = server.state_dir / "blobs"
        wait_for(lambda: list(blobs.glob(".upload-*")), 10, what="the upload under way")
    wait_for(lambda: not list(blobs.glob(".upload-*")) and not list(blobs.glob(".import-*")),
             10, what="its scratch files removed")
    assert "Traceback" not in server.log()
