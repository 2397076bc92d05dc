"""The EC2 query front end driven by real clients: boto3 and the aws CLI (both from PyPI).

Two kinds of location behind it: a local data center (dc-a) and EC2 on moto's server.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import VENV_BIN
from tests.e2e.test_cli import config
from tests.helpers import wait_for

AWS_AMI = "ami-760aaa0f"


def access_key(server: Any, role: str = "operator") -> tuple[str, str]:
    r = httpx.post(f"{server.url}/v1/access-keys", json={"name": f"ci-{role}", "role": role},
                   headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 201, r.text
    return r.json()["access_key_id"], r.json()["secret_access_key"]


def ec2_client(server: Any, key: tuple[str, str]) -> Any:
    return boto3.client("ec2", endpoint_url=f"{server.url}/ec2/", region_name="onepane",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1])


def states(ec2: Any, ids: list[str]) -> dict[str, str]:
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in res for i in r["Instances"]}


def error_code(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kw)
    return str(err.value.response["Error"]["Code"])


def test_boto3_runs_instances_on_two_kinds_of_location(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    ec2 = ec2_client(server, access_key(server))

    zones = {z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    assert zones == {"dc-a", "dc-b", "aws-us-east-1"}
    assert [r["RegionName"] for r in ec2.describe_regions()["Regions"]] == ["onepane"]

    run = {"ImageId": "httpecho", "InstanceType": "small", "MinCount": 1, "MaxCount": 1,
           "Placement": {"AvailabilityZone": "dc-a"}, "ClientToken": "web-a-once",
           "TagSpecifications": [{"ResourceType": "instance",
                                  "Tags": [{"Key": "Name", "Value": "web-a"},
                                           {"Key": "app", "Value": "shop"}]}]}
    first = ec2.run_instances(**run)["Instances"][0]["InstanceId"]
    again = ec2.run_instances(**run)["Instances"][0]["InstanceId"]
    assert first == again  # same ClientToken, one instance
    assert error_code(ec2.run_instances, **{**run, "InstanceType": "large"}) == \
        "IdempotentParameterMismatch"
    aws = ec2.run_instances(ImageId=AWS_AMI, InstanceType="t2.micro", MinCount=1, MaxCount=1,
                            Placement={"AvailabilityZone": "aws-us-east-1"},
                            TagSpecifications=[{"ResourceType": "instance",
                                                "Tags": [{"Key": "app", "Value": "shop"}]}]
                            )["Instances"][0]["InstanceId"]
    ids = [first, aws]
    wait_for(lambda: set(states(ec2, ids).values()) == {"running"}, 60, what="both running")

    # One call describes both locations; filters and pages work.
    shop = ec2.describe_instances(Filters=[{"Name": "tag:app", "Values": ["shop"]}])
    found = {i["InstanceId"]: i for r in shop["Reservations"] for i in r["Instances"]}
    assert set(found) == set(ids)
    assert {i["Placement"]["AvailabilityZone"] for i in found.values()} == {"dc-a", "aws-us-east-1"}
    assert {t["Key"]: t["Value"] for t in found[first]["Tags"]} == {"Name": "web-a", "app": "shop"}
    paged = ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    assert {i["InstanceId"] for p in paged for r in p["Reservations"] for i in r["Instances"]} == set(ids)
    only_a = ec2.describe_instances(Filters=[{"Name": "availability-zone", "Values": ["dc-a"]}])
    assert [i["InstanceId"] for r in only_a["Reservations"] for i in r["Instances"]] == [first]
    native = httpx.get(f"{server.url}/v1/instances", params={"tag": "app=shop"},
                       headers={"Authorization": f"Bearer {server.token}"}).json()["items"]
    assert len(native) == 2

    ec2.stop_instances(InstanceIds=ids)
    wait_for(lambda: set(states(ec2, ids).values()) == {"stopped"}, 60, what="both stopped")
    ec2.start_instances(InstanceIds=ids)
    wait_for(lambda: set(states(ec2, ids).values()) == {"running"}, 60, what="both running again")

    ec2.create_tags(Resources=[first], Tags=[{"Key": "tier", "Value": "front"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [first]}])["Tags"]
    assert {(t["Key"], t["Value"]) for t in tags} == {("Name", "web-a"), ("app", "shop"),
                                                      ("tier", "front")}

    ec2.terminate_instances(InstanceIds=ids)
    # asked for by id, they read terminated (what boto3's waiter looks for); lists drop them
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert set(states(ec2, ids).values()) == {"terminated"}

    def gone() -> bool:
        left = ec2.describe_instances(Filters=[{"Name": "tag:app", "Values": ["shop"]}])
        return not left["Reservations"]
    wait_for(gone, 60, what="both terminated")


def test_ec2_errors_have_ec2_codes(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    key = access_key(server)
    ec2 = ec2_client(server, key)
    assert error_code(ec2.describe_instances, InstanceIds=["i-0123456789abcdef0"]) == \
        "InvalidInstanceID.NotFound"
    assert error_code(ec2.describe_instances, InstanceIds=["vol-123"]) == "InvalidInstanceID.Malformed"
    assert error_code(ec2.run_instances, ImageId="no-such-image", InstanceType="small", MinCount=1,
                      MaxCount=1, Placement={"AvailabilityZone": "dc-a"}) == "InvalidAMIID.NotFound"
    assert error_code(ec2.run_instances, ImageId="httpecho", MinCount=1, MaxCount=1,
                      Placement={"AvailabilityZone": "nowhere"}) == "InvalidParameterValue"
    assert error_code(ec2.describe_instances, Filters=[{"Name": "bogus", "Values": ["x"]}]) == \
        "InvalidParameterValue"
    assert error_code(ec2_client(server, (key[0], "wrong")).describe_instances) == \
        "SignatureDoesNotMatch"
    assert error_code(ec2_client(server, ("AKOPNOSUCHKEY0000000", "x")).describe_instances) == \
        "AuthFailure"
    viewer = ec2_client(server, access_key(server, "viewer"))
    assert viewer.describe_instances()["Reservations"] == []
    assert error_code(viewer.run_instances, ImageId="httpecho", MinCount=1, MaxCount=1) == \
        "UnauthorizedOperation"
    # nothing was left behind by the rejected requests
    assert ec2.describe_instances()["Reservations"] == []
    unsigned = httpx.post(f"{server.url}/ec2/", data={"Action": "DescribeInstances"})
    assert unsigned.status_code == 401 and "<Code>MissingAuthenticationToken</Code>" in unsigned.text
    assert server.log().count(key[1]) == 0  # the secret is never logged


def test_volumes_vpcs_and_subnets(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    ec2 = ec2_client(server, access_key(server))
    auth = {"Authorization": f"Bearer {server.token}"}
    httpx.post(f"{server.url}/v1/networks", json={"name": "backend", "location": "dc-a",
                                                  "cidr": "10.20.0.0/24"}, headers=auth)
    wait_for(lambda: ec2.describe_vpcs()["Vpcs"] and ec2.describe_vpcs()["Vpcs"][0]["State"] ==
             "available", 30, what="vpc")
    vpc = ec2.describe_vpcs()["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.20.0.0/24"
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"][0]
    assert subnet["AvailabilityZone"] == "dc-a"

    inst = ec2.run_instances(ImageId="httpecho", InstanceType="small", MinCount=1, MaxCount=1,
                             Placement={"AvailabilityZone": "dc-a"})["Instances"][0]["InstanceId"]
    vol = ec2.create_volume(AvailabilityZone="dc-a", Size=1,
                            TagSpecifications=[{"ResourceType": "volume",
                                                "Tags": [{"Key": "Name", "Value": "data"}]}])["VolumeId"]

    def volume() -> dict[str, Any]:
        return dict(ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0])
    wait_for(lambda: volume()["State"] == "available"
             and states(ec2, [inst])[inst] == "running", 30, what="volume and instance ready")
    ec2.attach_volume(VolumeId=vol, InstanceId=inst, Device="/dev/vdb")
    wait_for(lambda: volume()["State"] == "in-use", 30, what="attached")
    assert volume()["Attachments"][0]["InstanceId"] == inst
    # EC2's codes: an attached volume is in use, a detached one is in the wrong state to detach
    assert error_code(ec2.delete_volume, VolumeId=vol) == "VolumeInUse"
    assert error_code(ec2.attach_volume, VolumeId=vol, InstanceId=inst,
                      Device="/dev/vdc") == "VolumeInUse"
    status = ec2.describe_volume_status(VolumeIds=[vol])["VolumeStatuses"]
    assert [(s["VolumeId"], s["VolumeStatus"]["Status"], s["Events"], s["Actions"])
            for s in status] == [(vol, "ok", [], [])]
    ec2.detach_volume(VolumeId=vol)
    wait_for(lambda: volume()["State"] == "available", 30, what="detached")
    assert error_code(ec2.detach_volume, VolumeId=vol) == "IncorrectState"
    ec2.delete_volume(VolumeId=vol)
    wait_for(lambda: not ec2.describe_volumes()["Volumes"], 30, what="deleted")
    assert error_code(ec2.describe_volumes, VolumeIds=[vol]) == "InvalidVolume.NotFound"

    # DeleteOnTermination changed on an attached volume: it goes with its instance; the
    # other one attached stays
    doomed, kept = (ec2.create_volume(AvailabilityZone="dc-a", Size=1)["VolumeId"]
                    for _ in range(2))
    wait_for(lambda: {v["VolumeId"]: v["State"] for v in ec2.describe_volumes()["Volumes"]}
             == {doomed: "available", kept: "available"}, 30, what="two volumes")
    ec2.attach_volume(VolumeId=doomed, InstanceId=inst, Device="/dev/vdb")
    ec2.attach_volume(VolumeId=kept, InstanceId=inst, Device="/dev/vdc")
    assert error_code(ec2.modify_instance_attribute, InstanceId=inst, BlockDeviceMappings=[
        {"DeviceName": "/dev/vdz", "Ebs": {"DeleteOnTermination": True}}]) \
        == "InvalidInstanceAttributeValue"
    ec2.modify_instance_attribute(InstanceId=inst, BlockDeviceMappings=[
        {"DeviceName": "/dev/vdb", "Ebs": {"VolumeId": doomed, "DeleteOnTermination": True}}])
    marked = ec2.describe_volumes(VolumeIds=[doomed])["Volumes"][0]["Attachments"][0]
    assert marked["DeleteOnTermination"] is True
    ec2.terminate_instances(InstanceIds=[inst])
    wait_for(lambda: {v["VolumeId"]: v["State"] for v in ec2.describe_volumes()["Volumes"]}
             == {kept: "available"}, 30, what="the marked volume deleted with its instance")


def test_group_names_address_releases_and_routes_answer_as_ec2_does(start_server: Any,
                                                                    moto: str) -> None:
    server = start_server(config(moto))
    ec2 = ec2_client(server, access_key(server))
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    for name, description in (('name%"', "ok"), ("ok", 'desc%"'), ("default", "default"),
                              ("sg-mine", "ok"), ("x" * 256, "ok")):
        assert error_code(ec2.create_security_group, VpcId=vpc, GroupName=name,
                          Description=description) == "InvalidParameterValue", name
    ok = ec2.create_security_group(VpcId=vpc, GroupName="web tier (a)", Description="a: [80]")
    assert ok["GroupId"].startswith("sg-")

    address = ec2.allocate_address(Domain="vpc")
    ip, alloc = address["PublicIp"], address["AllocationId"]
    assert error_code(ec2.release_address, PublicIp=ip) == "InvalidParameterValue"  # by its id
    assert error_code(ec2.release_address, PublicIp=ip, AllocationId=alloc) \
        == "InvalidParameterCombination"
    ec2.release_address(AllocationId=alloc)
    assert error_code(ec2.release_address, PublicIp=ip) == "AuthFailure"  # no longer yours
    assert error_code(ec2.release_address, PublicIp="ip") == "InvalidParameterValue"
    assert error_code(ec2.release_address, AllocationId=alloc) == "InvalidAllocationID.NotFound"

    # a route to an interface: not over the VPC's own (local) route, not to a missing one
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24",
                               AvailabilityZone="dc-a")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    assert error_code(ec2.create_route, RouteTableId=table, DestinationCidrBlock="10.40.0.0/16",
                      NetworkInterfaceId=eni) == "InvalidParameterValue"
    assert error_code(ec2.create_route, RouteTableId=table, DestinationCidrBlock="10.50.0.0/16",
                      NetworkInterfaceId="eni-0000000000000000f") \
        == "InvalidNetworkInterfaceID.NotFound"
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="10.50.0.0/16",
                     NetworkInterfaceId=eni)
    routes = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    assert {(r["DestinationCidrBlock"], r.get("NetworkInterfaceId", r.get("GatewayId")))
            for r in routes} == {("10.40.0.0/16", "local"), ("10.50.0.0/16", eni)}



def test_customer_gateways_and_tags_at_every_create(start_server: Any, moto: str) -> None:
    """Issue 32: customer gateways kept as EC2 keeps them (one per address, ASN and type; tagged
    and found by their tags), and TagSpecification honoured on every create that takes one, or
    refused where the resource has no tags — never dropped."""
    server = start_server(config(moto))
    ec2 = ec2_client(server, access_key(server))
    name = [{"ResourceType": "customer-gateway", "Tags": [{"Key": "Name", "Value": "hq"}]}]
    made = ec2.create_customer_gateway(Type="ipsec.1", PublicIp="198.51.100.77", BgpAsn=65010,
                                       TagSpecifications=name)["CustomerGateway"]
    cgw = made["CustomerGatewayId"]
    assert cgw.startswith("cgw-") and made["BgpAsn"] == "65010" and made["State"] == "available"
    again = ec2.create_customer_gateway(Type="ipsec.1", IpAddress="198.51.100.77", BgpAsn=65010)
    assert again["CustomerGateway"]["CustomerGatewayId"] == cgw  # the same gateway, no twin
    for bad in ({"Type": "ipsec.2", "IpAddress": "198.51.100.78"},
                {"Type": "ipsec.1", "IpAddress": "not-an-address"},
                {"Type": "ipsec.1", "IpAddress": "198.51.100.78", "BgpAsn": 0}):
        assert error_code(ec2.create_customer_gateway, **bad) == "InvalidParameterValue", bad
    found = ec2.describe_customer_gateways(Filters=[{"Name": "tag:Name", "Values": ["hq"]}])
    assert [g["CustomerGatewayId"] for g in found["CustomerGateways"]] == [cgw]
    assert [(t["ResourceId"], t["Key"]) for t in ec2.describe_tags(
        Filters=[{"Name": "resource-type", "Values": ["customer-gateway"]}])["Tags"]] \
        == [(cgw, "Name")]
    ec2.delete_customer_gateway(CustomerGatewayId=cgw)
    assert error_code(ec2.describe_customer_gateways, CustomerGatewayIds=[cgw]) \
        == "InvalidCustomerGatewayID.NotFound"

    def spec(kind: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": "made-by", "Value": "test"}]}]
    vpc = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway"))
    rtb = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table"))
    dopt = ec2.create_dhcp_options(DhcpConfigurations=[{"Key": "domain-name", "Values": ["x"]}],
                                   TagSpecifications=spec("dhcp-options"))
    for shape in (igw["InternetGateway"], rtb["RouteTable"], dopt["DhcpOptions"]):
        assert shape["Tags"] == [{"Key": "made-by", "Value": "test"}], shape
    assert len(ec2.describe_tags(Filters=[{"Name": "key", "Values": ["made-by"]}])["Tags"]) == 3
    assert error_code(ec2.create_internet_gateway, TagSpecifications=spec("vpc")) \
        == "InvalidParameterValue"  # a type this call does not make: refused, nothing made
    assert len(ec2.describe_internet_gateways()["InternetGateways"]) == 1
    assert error_code(ec2.create_key_pair, KeyName="tagged", TagSpecifications=spec("key-pair")) \
        == "InvalidParameterValue"
    assert ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["tagged"]}])[
        "KeyPairs"] == []

def test_aws_cli(start_server: Any, moto: str) -> None:
    server = start_server(config(moto))
    key = access_key(server)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1],
           "AWS_DEFAULT_REGION": "onepane", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "aws"), "--endpoint-url", f"{server.url}/ec2/",
                               "--output", "json", "ec2", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    ids = []
    for zone, image, size in [("dc-b", "httpecho", "nano"), ("aws-us-east-1", AWS_AMI, "t2.micro")]:
        r = aws("run-instances", "--image-id", image, "--instance-type", size, "--count", "1",
                "--placement", f"AvailabilityZone={zone}", "--client-token", f"cli-{zone}")
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["Instances"][0]["InstanceId"])

    def described() -> dict[str, str]:
        r = aws("describe-instances")
        assert r.returncode == 0, r.stderr
        return {i["InstanceId"]: i["State"]["Name"] for res in json.loads(r.stdout)["Reservations"]
                for i in res["Instances"]}
    wait_for(lambda: described() == dict.fromkeys(ids, "running"), 60, what="running via aws CLI")
    assert aws("stop-instances", "--instance-ids", *ids).returncode == 0
    wait_for(lambda: described() == dict.fromkeys(ids, "stopped"), 60, what="stopped via aws CLI")
    assert aws("start-instances", "--instance-ids", *ids).returncode == 0
    wait_for(lambda: described() == dict.fromkeys(ids, "running"), 60, what="started via aws CLI")
    assert aws("terminate-instances", "--instance-ids", *ids).returncode == 0
    wait_for(lambda: described() == {}, 60, what="terminated via aws CLI")
    waited = aws("wait", "instance-terminated", "--instance-ids", *ids)
    assert waited.returncode == 0, waited.stderr
    bad = aws("describe-instances", "--instance-ids", "i-00000000000000000")
    assert bad.returncode != 0 and "InvalidInstanceID.NotFound" in bad.stderr


def test_what_ansible_sends_at_create(start_server: Any, moto: str) -> None:
    """Issue 32: amazon.aws's ec2_instance always launches with NetworkInterface.1 (device 0,
    a subnet, groups); ec2_vpc_net finds its VPC again by the Name tag given at create
    (TagSpecification on CreateVpc, also CreateSubnet, CreateSecurityGroup, CreateSnapshot)."""
    server = start_server(config(moto))
    ec2 = ec2_client(server, access_key(server))

    def named(kind: str, name: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": name}]}]
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16", TagSpecifications=named("vpc", "app"))["Vpc"]
    assert {"Key": "Name", "Value": "app"} in vpc.get("Tags", [])
    found = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["app"]}])["Vpcs"]
    assert [v["VpcId"] for v in found] == [vpc["VpcId"]]
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.30.1.0/24",
                               AvailabilityZone="dc-a",
                               TagSpecifications=named("subnet", "app-a"))["Subnet"]
    assert ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": ["app-a"]}]
                                )["Subnets"][0]["SubnetId"] == subnet["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc["VpcId"],
                                      TagSpecifications=named("security-group", "web"))
    assert {"Key": "Name", "Value": "web"} in ec2.describe_security_groups(
        GroupIds=[group["GroupId"]])["SecurityGroups"][0]["Tags"]
    # a bad tag makes nothing
    before = len(ec2.describe_vpcs()["Vpcs"])
    assert error_code(ec2.create_vpc, CidrBlock="10.31.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "", "Value": "x"}]}]) == "InvalidParameterValue"
    assert len(ec2.describe_vpcs()["Vpcs"]) == before

    # the launch ec2_instance makes: its interface says where, with which groups
    inst = ec2.run_instances(ImageId="httpecho", InstanceType="small", MinCount=1, MaxCount=1,
                             NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet["SubnetId"],
                                                 "Groups": [group["GroupId"]],
                                                 "AssociatePublicIpAddress": True,
                                                 "DeleteOnTermination": True}],
                             TagSpecifications=named("instance", "web-1"))["Instances"][0]
    assert inst["SubnetId"] == subnet["SubnetId"] and inst["VpcId"] == vpc["VpcId"]
    by_vpc = ec2.describe_instances(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    assert [i["InstanceId"] for r in by_vpc["Reservations"] for i in r["Instances"]] \
        == [inst["InstanceId"]]
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group["GroupId"]]
    # what onepane cannot honour is refused by name, and makes nothing
    count = len(ec2.describe_instances()["Reservations"])
    for nic in ({"DeviceIndex": 0, "NetworkInterfaceId": "eni-12345678"},
                {"DeviceIndex": 0, "SubnetId": subnet["SubnetId"], "PrivateIpAddress": "10.30.1.9"},
                {"DeviceIndex": 0, "SubnetId": subnet["SubnetId"], "DeleteOnTermination": False}):
        assert error_code(ec2.run_instances, ImageId="httpecho", InstanceType="small",
                          MinCount=1, MaxCount=1, NetworkInterfaces=[nic]) == "UnsupportedOperation"
    assert error_code(ec2.run_instances, ImageId="httpecho", InstanceType="small", MinCount=1,
                      MaxCount=1, SubnetId=subnet["SubnetId"],
                      NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet["SubnetId"]}]
                      ) == "InvalidParameterCombination"
    assert len(ec2.describe_instances()["Reservations"]) == count
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])


def test_what_ansible_asks_on_a_rerun(start_server: Any, moto: str) -> None:
    """Issue 32, the calls amazon.aws makes on every run: ec2_vpc_net sets the VPC's DNS
    attributes, ec2_vpc_subnet reads assignIpv6AddressOnCreation and sets MapPublicIpOnLaunch,
    ec2_vol reads multiAttachEnabled, ec2_snapshot_info asks DescribeSnapshotAttribute, and
    ec2_security_group first asks sts:GetCallerIdentity and iam:GetUser at the same endpoint."""
    server = start_server(config(moto))
    key = access_key(server)
    ec2 = ec2_client(server, key)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"] is False
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"] is True
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")[
        "EnableDnsSupport"]["Value"] is True
    assert error_code(ec2.modify_vpc_attribute, VpcId="vpc-00000000",
                      EnableDnsSupport={"Value": True}) == "InvalidVpcID.NotFound"

    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24",
                               AvailabilityZone="dc-a")["Subnet"]["SubnetId"]
    shown = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]
    assert shown["AssignIpv6AddressOnCreation"] is False and shown["MapPublicIpOnLaunch"] is False
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["MapPublicIpOnLaunch"] is True
    assert error_code(ec2.modify_subnet_attribute, SubnetId=subnet,
                      AssignIpv6AddressOnCreation={"Value": True}) == "UnsupportedOperation"
    ec2.modify_subnet_attribute(SubnetId=subnet, AssignIpv6AddressOnCreation={"Value": False})

    vol = ec2.create_volume(AvailabilityZone="dc-a", Size=1)["VolumeId"]
    wait_for(lambda: ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["State"] == "available",
             30, what="the volume")
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["MultiAttachEnabled"] is False
    snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    perm = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    assert perm["SnapshotId"] == snap and perm["CreateVolumePermissions"] == []

    who = boto3.client("sts", endpoint_url=f"{server.url}/ec2/", region_name="onepane",
                       aws_access_key_id=key[0], aws_secret_access_key=key[1]
                       ).get_caller_identity()
    assert who["Account"] == "000000000000" and who["UserId"] == key[0]
    assert who["Arn"] == "arn:aws:iam::000000000000:user/ci-operator"
    user = boto3.client("iam", endpoint_url=f"{server.url}/ec2/", region_name="onepane",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1]).get_user()
    assert user["User"]["UserName"] == "ci-operator" and user["User"]["Arn"] == who["Arn"]
    wrong = boto3.client("sts", endpoint_url=f"{server.url}/ec2/", region_name="onepane",
                         aws_access_key_id=key[0], aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        wrong.get_caller_identity()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
