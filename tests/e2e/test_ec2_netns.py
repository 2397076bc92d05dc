"""The EC2 front end at netns locations, where its security groups and interfaces carry real
traffic: nftables rules in the namespace both ways, an interface's address and an elastic
address associated with it reaching the instance. Kept apart from test_ec2_tools.py because
it makes namespaces: tests/conftest.py runs such files in one worker, in turn."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.test_ec2_api import access_key, ec2_client
from tests.e2e.test_ec2_tools import RUN
from tests.helpers import wait_for


def test_security_groups_are_enforced_in_a_namespace_location(start_server: Any) -> None:
    """At a netns location a group's rules are nftables rules inside the namespace: inbound,
    what they allow connects, what they do not is dropped (a timeout, not a refusal);
    outbound (issue 32), what the instance itself opens — tried from the instance, through
    httpecho's /reach — goes only where its egress rules say."""
    import socket
    import subprocess as sp

    from onepane.providers.dcnet import CATCH_ALL
    from onepane.providers.netns import NetnsProvider
    had = CATCH_ALL in sp.run(["ip", "route", "show", "type", "blackhole"], capture_output=True,
                              text=True).stdout
    server = start_server('[locations.sg-n]\nprovider = "netns"\noptions = { index = 234 }\n')
    try:
        ec2 = ec2_client(server, access_key(server))
        gid = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
        iid = ec2.run_instances(**{**RUN, "Placement": {"AvailabilityZone": "sg-n"}},
                                SecurityGroupIds=[gid])["Instances"][0]["InstanceId"]

        def endpoint() -> tuple[str, int] | None:
            inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
            if inst["State"]["Name"] != "running":
                return None
            native = httpx.get(f"{server.url}/v1/instances/inst-{iid[2:]}", headers={
                "Authorization": f"Bearer {server.token}"}).json()
            return native["addresses"][0], native["ports"]["app"]
        host, port = wait_for(endpoint, 30, what="running in the namespace")

        def reachable() -> bool:
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(lambda: not reachable(), 15, what="no rule: inbound dropped")
        perm = [{"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
                 "IpRanges": [{"CidrIp": "10.200.0.0/16"}]}]
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perm)
        wait_for(reachable, 15, what="allowed from the host's side of the link")
        ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=perm)
        wait_for(lambda: not reachable(), 15, what="revoked: dropped again")
        tags = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["Tags"]
        assert any(t["Key"] == "onepane:enforced" and "netns" in t["Value"] for t in tags)

        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perm)
        wait_for(reachable, 15, what="allowed again, to ask the instance")
        gateway = NetnsProvider("sg-n", server.state_dir, {"index": 234}).gateway
        listeners = [socket.create_server(("0.0.0.0", 0)) for _ in range(2)]
        allowed, other = (s.getsockname()[1] for s in listeners)

        def opens(to: int) -> bool:
            return bool(httpx.get(f"http://{host}:{port}/reach", params={
                "host": gateway, "port": to, "timeout": 0.5}, timeout=5).json()["reached"])
        try:
            assert opens(allowed) and opens(other)  # a group outside a VPC: all goes out
            out = [{"IpProtocol": "tcp", "FromPort": allowed, "ToPort": allowed,
                    "IpRanges": [{"CidrIp": f"{gateway}/32"}]}]
            ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=out)
            wait_for(lambda: not opens(other), 15, what="egress: what no rule allows dropped")
            assert opens(allowed)
            ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=out)
            wait_for(lambda: opens(other), 15, what="no egress rule left: all goes out again")
        finally:
            for s in listeners:
                s.close()
    finally:
        server.stop()
        NetnsProvider("sg-n", server.state_dir, {"index": 234}).teardown()
        if not had:
            sp.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


def test_an_attached_interface_is_an_address_of_the_instance_in_a_namespace(
        start_server: Any) -> None:
    """Issue 32: at a netns location an interface's address is real: attached, a client
    reaches the instance at it (every port to the instance's one service port); detached,
    the address reaches nothing again. An elastic address associated with the interface
    before it is attached (EC2's preliminary association) reaches the instance from the
    attachment on, and nothing after the detachment."""
    import subprocess as sp

    from onepane.providers.dcnet import CATCH_ALL
    from onepane.providers.netns import NetnsProvider
    had = CATCH_ALL in sp.run(["ip", "route", "show", "type", "blackhole"], capture_output=True,
                              text=True).stdout
    server = start_server('[locations.eni-n]\nprovider = "netns"\noptions = { index = 233 }\n')
    try:
        ec2 = ec2_client(server, access_key(server))
        # inside the drills' blackhole (10.200.0.0/16; no location here has index 230), so
        # an address onepane does not route reaches nothing, on or off the machine
        vpc = ec2.create_vpc(CidrBlock="10.200.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.200.230.0/24",
                                   AvailabilityZone="eni-n")["Subnet"]["SubnetId"]
        iid = ec2.run_instances(**{**RUN, "Placement": {"AvailabilityZone": "eni-n"}},
                                SubnetId=subnet)["Instances"][0]["InstanceId"]
        eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
        address = eni["PrivateIpAddress"]
        eip = ec2.allocate_address(Domain="vpc")
        assoc = ec2.associate_address(AllocationId=eip["AllocationId"],
                                      NetworkInterfaceId=eni["NetworkInterfaceId"])
        shown = ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]
        assert (shown["NetworkInterfaceId"], shown["PrivateIpAddress"], "InstanceId" in shown
                ) == (eni["NetworkInterfaceId"], address, False)

        def answers(at: str) -> str | None:
            try:
                return str(httpx.get(f"http://{at}:80/", timeout=1).json()["instance"])
            except (httpx.HTTPError, ValueError):
                return None
        assert answers(address) is None and answers(eip["PublicIp"]) is None
        wait_for(lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][
            "Instances"][0]["State"]["Name"] == "running", 30, what="the instance running")
        attachment = ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                                  InstanceId=iid, DeviceIndex=1)["AttachmentId"]
        wait_for(lambda: answers(address) == f"inst-{iid[2:]}", 15,
                 what="the instance answering at its interface's address")
        wait_for(lambda: answers(eip["PublicIp"]) == f"inst-{iid[2:]}", 15,
                 what="the interface's elastic address reaching the instance once attached")
        assert ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0][
            "InstanceId"] == iid
        ec2.detach_network_interface(AttachmentId=attachment)
        wait_for(lambda: answers(address) is None, 15,
                 what="detached: the address reaches nothing")
        wait_for(lambda: answers(eip["PublicIp"]) is None, 15,
                 what="detached: the elastic address reaches nothing either")
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
        assert "AssociationId" not in ec2.describe_addresses(
            AllocationIds=[eip["AllocationId"]])["Addresses"][0]  # gone with its interface
        assert assoc["AssociationId"]
    finally:
        server.stop()
        NetnsProvider("eni-n", server.state_dir, {"index": 233}).teardown()
        if not had:
            sp.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)
