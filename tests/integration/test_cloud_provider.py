"""Libcloud drivers for real: EC2 on moto's server (via ec2-compat), and Libcloud's dummy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import pytest

from onepane.errors import InvalidInput, NotFound, TransientProviderError
from onepane.model import InstanceState
from onepane.providers.base import Feature, InstanceSpec
from onepane.providers.cloud import CloudProvider
from onepane.providers.ec2 import Ec2Provider
from tests.helpers import free_port

AMI = "ami-760aaa0f"


def ec2(moto: str) -> CloudProvider:
    port = int(moto.rsplit(":", 1)[1])
    return Ec2Provider("aws", "ec2-compat", "us-east-1", {"key": "testing", "secret": "testing"},
                         {"host": "127.0.0.1", "port": port, "secure": False})


def boto(moto: str):  # type: ignore[no-untyped-def]
    return boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_ec2_instances_lifecycle(moto: str) -> None:
    p = ec2(moto)
    assert all(p.capabilities.supports(f) for f in (Feature.volumes, Feature.networks,
                                                    Feature.stop_start, Feature.disk_images,
                                                    Feature.idempotent_create))
    p.validate(AMI, "t2.micro")
    obs = p.create_instance(InstanceSpec("inst-c1", "web", AMI, "t2.micro", tags={"app": "x"}))
    assert obs.state in (InstanceState.pending, InstanceState.running)
    assert obs.onepane_id == "inst-c1"
    assert obs.tags["app"] == "x"
    assert p.list_instances()[0].state == InstanceState.running
    # a retry after a lost reply finds the first server
    again = p.create_instance(InstanceSpec("inst-c1", "web", AMI, "t2.micro"))
    assert again.provider_id == obs.provider_id
    assert len(p.list_instances()) == 1
    p.stop_instance(obs.provider_id)
    assert p.list_instances()[0].state == InstanceState.stopped
    p.start_instance(obs.provider_id)
    p.reboot_instance(obs.provider_id)
    assert p.list_instances()[0].state == InstanceState.running
    p.destroy_instance(obs.provider_id)
    assert p.list_instances() == []
    p.destroy_instance(obs.provider_id)  # idempotent


def test_ec2_lists_past_the_first_page(moto: str) -> None:
    boto(moto).run_instances(ImageId=AMI, MinCount=120, MaxCount=120, InstanceType="t2.micro")
    assert len(ec2(moto).list_instances()) == 120  # moto pages at 100


def test_ec2_volumes_networks_images(moto: str) -> None:
    p = ec2(moto)
    node = p.create_instance(InstanceSpec("inst-c2", "db", AMI, "t2.micro"))
    vol = p.create_volume("data", 8)
    assert vol.size_gb == 8
    p.attach_volume(vol.provider_id, node.provider_id, "/dev/sdh")
    attached = next(v for v in p.list_volumes() if v.provider_id == vol.provider_id)
    assert attached.attached_to == node.provider_id
    p.detach_volume(vol.provider_id)
    assert next(v for v in p.list_volumes() if v.provider_id == vol.provider_id).attached_to is None
    p.delete_volume(vol.provider_id)
    assert vol.provider_id not in {v.provider_id for v in p.list_volumes()}

    net = p.create_network("backend", "10.20.0.0/16")
    assert net.cidr == "10.20.0.0/16"
    cidrs = {n.cidr for n in p.list_networks()}
    assert {"10.20.0.0/16", "172.31.0.0/16"} <= cidrs  # ours and the default VPC

    images = p.list_images()
    assert AMI in {i.provider_id for i in images}


def test_ec2_bad_input_is_a_clear_error(moto: str) -> None:
    p = ec2(moto)
    with pytest.raises(InvalidInput, match="unknown size 'huge'"):
        p.validate(AMI, "huge")
    with pytest.raises(InvalidInput, match="ami-00000000"):
        p.validate("ami-00000000", "t2.micro")
    with pytest.raises(NotFound):
        p.stop_instance("i-0123456789abcdef0")


def test_unreachable_endpoint_is_transient() -> None:
    p = Ec2Provider("aws", "ec2-compat", "us-east-1", {"key": "k", "secret": "s"},
                      {"host": "127.0.0.1", "port": free_port(), "secure": False})
    with pytest.raises(TransientProviderError):
        p.check()


def test_unknown_driver_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="unknown Libcloud driver 'no-such-cloud'") as exc:
        CloudProvider("x", "no-such-cloud", "r", {}, {})
    assert exc.value.field == "driver"


def test_libcloud_dummy_driver() -> None:
    p = CloudProvider("dummy", "dummy", "local", {}, {})
    before = len(p.list_instances())
    size = p.list_sizes()[0].provider_id
    obs = p.create_instance(InstanceSpec("inst-d1", "d", "1", size))
    assert obs.state == InstanceState.running
    assert len(p.list_instances()) == before + 1
    p.reboot_instance(obs.provider_id)
    p.destroy_instance(obs.provider_id)
    assert len(p.list_instances()) == before
    assert not p.capabilities.supports(Feature.volumes)
    assert "creates no volumes" in p.capabilities.reasons()["volumes"]


@pytest.mark.parametrize("single_put_max", [None, 1024])
def test_disk_import_via_s3_single_put_and_multipart(moto: str, tmp_path: Path,
                                                     single_put_max: int | None) -> None:
    """Both upload paths end with the same object and an AMI: one PUT checked against S3's ETag,
    or multipart (forced by a tiny single_put_max) read back and hashed; a second run reuses."""
    port = int(moto.rsplit(":", 1)[1])
    options = {"host": "127.0.0.1", "port": port, "secure": False,
               **({"single_put_max": single_put_max} if single_put_max else {})}
    p = Ec2Provider("aws", "ec2-compat", "us-east-1", {"key": "k", "secret": "s"}, options)
    disk = tmp_path / "disk.vmdk"
    disk.write_bytes(os.urandom(6 * 2**20 + 123))
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    seen: list[float] = []
    ami = p.import_disk("img-1", "bench", disk, "vmdk", digest, seen.append)
    assert ami.startswith("ami-") and seen[-1] == 100.0
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="k", aws_secret_access_key="s")
    body = s3.get_object(Bucket="onepane-images", Key=f"img-1-{digest[:16]}.vmdk")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest
    assert p.import_disk("img-1", "bench", disk, "vmdk", digest, seen.append) == ami  # reused
