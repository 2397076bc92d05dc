"""onepane's records in the shapes of the EC2 2016-11-15 API.

IDs: onepane's time-ordered ids keep their hex part, so `inst-0193a...` is `i-0193a...` and a
network `net-0193a...` is both `vpc-0193a...` and its one subnet `subnet-0193a...`. Volume ids
(`vol-...`) are already EC2-shaped. Locations are availability zones of one region.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ...model import Image, Instance, InstanceState, Location, Network, Volume
from .wire import Ec2Error

ROOT_DEVICE = "/dev/sda1"


@dataclass
class Extras:
    """What an instance's EC2 shape needs beyond the instance, looked up once for a listing:
    security groups, key names and attached volumes by instance id."""

    groups: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # id -> (sg, name)
    key_names: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, list[Volume]] = field(default_factory=dict)
    reservations: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (r-, index)
    vpcs: dict[str, str] = field(default_factory=dict)  # network id -> its EC2 VPC
    source_dest: dict[str, bool] = field(default_factory=dict)  # instance -> sourceDestCheck
    # instance -> the interfaces attached to it besides its own (interfaces.py's records)
    interfaces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    root_kinds: dict[str, str] = field(default_factory=dict)  # location -> ebs|instance-store
    roots: dict[str, Volume] = field(default_factory=dict)  # instance -> its root volume
    doomed: set[str] = field(default_factory=set)  # volumes deleted with their instance

OWNER = "000000000000"
# A location's own images (an app a process location ships, a cloud's public images) are not
# the caller's: public, owned by the locations, like the AMIs a cloud publishes
LOCATIONS_OWNER = "000000000001"
# EC2 state codes: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceState.html
STATES: dict[str, tuple[int, str]] = {
    InstanceState.pending: (0, "pending"),
    InstanceState.running: (16, "running"),
    InstanceState.rebooting: (16, "running"),
    InstanceState.stopped: (80, "stopped"),
    InstanceState.suspended: (80, "stopped"),  # EC2's hibernated instances are "stopped" too
    InstanceState.error: (80, "stopped"),
    InstanceState.missing: (48, "terminated"),
    InstanceState.unknown: (0, "pending"),
}
SHUTTING_DOWN = {"code": 32, "name": "shutting-down"}
STOPPING = {"code": 64, "name": "stopping"}
PENDING = {"code": 0, "name": "pending"}


def to_onepane(ec2_id: str, kind: str) -> str:
    """`i-abc` -> `inst-abc`; raises the EC2 "Malformed" error for ids of another kind."""
    prefix, native, code = {"instance": ("i-", "inst-", "InvalidInstanceID.Malformed"),
                            "vpc": ("vpc-", "net-", "InvalidVpcID.Malformed"),
                            "subnet": ("subnet-", "net-", "InvalidSubnetID.Malformed"),
                            "volume": ("vol-", "vol-", "InvalidVolumeID.Malformed")}[kind]
    suffix = ec2_id[len(prefix):]
    if not ec2_id.startswith(prefix) or not suffix or not all(c in "0123456789abcdef" for c in suffix):
        raise Ec2Error(code, f"invalid id: {ec2_id!r} is not a {kind} id ({prefix}...)")
    return native + suffix


def instance_id(onepane_id: str) -> str:
    return "i-" + onepane_id.split("-", 1)[1]


def tag_set(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def state_of(inst: Instance) -> dict[str, Any]:
    code, name = STATES.get(inst.state, (0, "pending"))
    return {"code": code, "name": name}


def split_addresses(addresses: list[str]) -> tuple[str | None, str | None]:
    """(private, public): by what each address is, whatever order a provider listed them in."""
    private = public = None
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        if ip.is_global and public is None:
            public = a
        elif not ip.is_global and private is None:
            private = a
    return private, public


def private_dns(address: str | None) -> str:
    return f"ip-{address.replace('.', '-')}.onepane.internal" if address else ""


def block_devices(inst: Instance, volumes: list[Volume], root: Volume | None = None,
                  doomed: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The instance's root volume first (it goes with the instance), then its volumes
    (`doomed`: those deleted with it)."""
    return [{"deviceName": v.device or "", "ebs": {
        "volumeId": v.id, "status": "attached", "attachTime": v.created_at,
        "deleteOnTermination": v is root or v.id in doomed}}
        for v in ([root] if root else []) + volumes if v.attached_to == inst.id]


def instance(inst: Instance, index: int = 0, extras: Extras | None = None) -> dict[str, Any]:
    extras = extras or Extras()
    root = extras.roots.get(inst.id)
    private, public = split_addresses(inst.addresses)
    groups = extras.groups.get(inst.id, [])
    vpc = extras.vpcs.get(inst.network, "vpc-" + inst.network.split("-", 1)[1]) \
        if inst.network else None
    return {
        "instanceId": instance_id(inst.id),
        "imageId": inst.image,
        "instanceState": state_of(inst),
        "privateDnsName": private_dns(private),
        "dnsName": "",
        "keyName": extras.key_names.get(inst.id),
        "reason": "",
        "amiLaunchIndex": index,
        "productCodes": [],
        "instanceType": inst.size,
        "launchTime": inst.created_at,
        "placement": {"availabilityZone": inst.location, "groupName": "", "tenancy": "default"},
        "monitoring": {"state": "disabled"},
        "privateIpAddress": private,
        "ipAddress": public,
        "groupSet": [{"groupId": g, "groupName": n} for g, n in groups],
        "architecture": "x86_64",
        "rootDeviceType": extras.root_kinds.get(inst.location, "ebs"),
        "rootDeviceName": root.device if root else ROOT_DEVICE,
        "blockDeviceMapping": block_devices(inst, extras.volumes.get(inst.id, []), root,
                                            extras.doomed),
        "virtualizationType": "hvm",
        "hypervisor": "xen",
        "tagSet": tag_set(inst.tags),
        "subnetId": "subnet-" + inst.network.split("-", 1)[1] if inst.network else None,
        "vpcId": vpc,
        "sourceDestCheck": extras.source_dest.get(inst.id, True) if inst.network else None,
        "networkInterfaceSet": [network_interface(inst, vpc, groups, extras.source_dest.get(
            inst.id, True)), *extras.interfaces.get(inst.id, [])] if inst.network and vpc
        else None,
    }


def reservation(insts: list[Instance], extras: Extras | None = None,
                reservation_id: str | None = None) -> dict[str, Any]:
    """One reservation: what one RunInstances made (launch indexes in order)."""
    return {"reservationId": reservation_id or "r-" + insts[0].id.split("-", 1)[1],
            "ownerId": OWNER, "groupSet": [],
            "instancesSet": [instance(i, n, extras) for n, i in enumerate(insts)]}


def volume_status(vol: Volume) -> str:
    return vol.state if vol.state in ("creating", "available", "in-use", "deleting") else "error"


def volume(vol: Volume, snapshot: str = "", delete_on_termination: bool = False
           ) -> dict[str, Any]:
    status = volume_status(vol)
    attachments = []
    if vol.attached_to:
        attachments.append({"volumeId": vol.id, "instanceId": instance_id(vol.attached_to),
                            "device": vol.device or "", "status": "attached",
                            "attachTime": vol.created_at,
                            "deleteOnTermination": delete_on_termination})
    return {"volumeId": vol.id, "size": vol.size_gb, "snapshotId": snapshot,
            "availabilityZone": vol.location, "status": status, "createTime": vol.created_at,
            "attachmentSet": attachments, "volumeType": "standard", "encrypted": False,
            "multiAttachEnabled": False, "tagSet": tag_set(vol.tags)}


def vpc(net: Network) -> dict[str, Any]:
    return {"vpcId": "vpc-" + net.id.split("-", 1)[1], "ownerId": OWNER,
            "state": "available" if net.state == "available" else "pending",
            "cidrBlock": net.cidr or "", "dhcpOptionsId": "default", "instanceTenancy": "default",
            "isDefault": False, "tagSet": tag_set({"Name": net.name})}


def subnet(net: Network) -> dict[str, Any]:
    hex_id = net.id.split("-", 1)[1]
    return {"subnetId": "subnet-" + hex_id, "vpcId": "vpc-" + hex_id, "ownerId": OWNER,
            "state": "available" if net.state == "available" else "pending",
            "cidrBlock": net.cidr or "", "availabilityZone": net.location,
            "availableIpAddressCount": 251, "defaultForAz": False, "mapPublicIpOnLaunch": False,
            "assignIpv6AddressOnCreation": False, "ipv6CidrBlockAssociationSet": [],
            "tagSet": tag_set({"Name": net.name})}


def zone(loc: Location, region: str) -> dict[str, Any]:
    ok = loc.status in ("ok", "unknown")
    return {"zoneName": loc.name, "zoneId": loc.name, "zoneState": "available" if ok else "impaired",
            "regionName": region, "zoneType": "availability-zone", "optInStatus":
            "opt-in-not-required", "messageSet": [] if ok else [{"message": loc.status_detail or
                                                                  loc.status}]}


def image(img: Image, tags: dict[str, str] | None = None, root_kind: str = "ebs",
          device: str = ROOT_DEVICE) -> dict[str, Any]:
    """A location's own image: an app of a process location is `instance-store` (no disk of
    its own), a disk image or a cloud's AMI is EBS-backed (its root at `device`)."""
    ebs = root_kind == "ebs"
    return {"imageId": img.id, "imageLocation": f"{img.location}/{img.name}",
            "imageState": "available", "imageOwnerId": LOCATIONS_OWNER, "isPublic": True,
            "imageOwnerAlias": "onepane-locations",
            "architecture": "x86_64", "imageType": "machine", "name": img.name,
            "rootDeviceType": root_kind, "rootDeviceName": device,
            "blockDeviceMapping": [{"deviceName": device, "ebs": {
                "deleteOnTermination": True, "volumeType": "standard", "encrypted": False}}]
            if ebs else [],
            "virtualizationType": "hvm", "hypervisor": "xen",
            "tagSet": tag_set({**(tags or {}), "onepane:location": img.location})}


def catalog_image(img: Any, tags: dict[str, str] | None = None,
                  root: tuple[str, str, int] | None = None) -> dict[str, Any]:
    """A catalog image (img-...): onepane's own disk image, bootable where a replica is
    ready; `root` is its root mapping (device, the snapshot it stands for, GiB)."""
    ready = [r.location for r in img.replicas if r.state == "ready" and r.bootable]
    device, snapshot, size = root or (ROOT_DEVICE, None, None)
    return {"imageId": img.id, "imageLocation": f"onepane/{img.name}/{img.version}",
            "imageState": "available" if ready else "pending", "imageOwnerId": OWNER,
            "isPublic": False, "architecture": "x86_64", "imageType": "machine",
            "creationDate": img.created_at,
            "name": img.name, "rootDeviceType": "ebs", "rootDeviceName": device,
            "blockDeviceMapping": [{"deviceName": device, "ebs": {
                "snapshotId": snapshot, "volumeSize": size, "deleteOnTermination": True,
                "volumeType": "standard", "encrypted": False}}],
            "virtualizationType": "hvm", "hypervisor": "kvm",
            "tagSet": tag_set({**(tags or {}), "onepane:catalog": "true"})}


def mac_of(hex_id: str) -> str:
    """A stable, locally administered MAC from a resource's hex id (a process has no MAC)."""
    return "02:" + ":".join(hex_id[-10:][i:i + 2] for i in range(0, 10, 2))


def network_interface(inst: Instance, vpc: str, groups: list[tuple[str, str]],
                      source_dest_check: bool) -> dict[str, Any]:
    """An instance in a subnet has one interface: onepane's record of its place in the
    network. A process has no MAC of its own; the one shown is derived from the instance id
    (locally administered), so that it is stable."""
    hex_id = inst.id.split("-", 1)[1]
    private, public = split_addresses(inst.addresses)
    mac = mac_of(hex_id)
    assert inst.network is not None
    return {"networkInterfaceId": "eni-" + hex_id, "subnetId": "subnet-" + inst.network.split(
                "-", 1)[1], "vpcId": vpc, "description": "", "ownerId": OWNER,
            "status": "in-use", "macAddress": mac, "privateIpAddress": private,
            "privateDnsName": private_dns(private), "sourceDestCheck": source_dest_check,
            "groupSet": [{"groupId": g, "groupName": n} for g, n in groups],
            "attachment": {"attachmentId": "eni-attach-" + hex_id, "deviceIndex": 0,
                           "status": "attached", "attachTime": inst.created_at,
                           "deleteOnTermination": True},
            "privateIpAddressesSet": [{"privateIpAddress": private, "primary": True,
                                       "privateDnsName": private_dns(private)}]
            if private else [],
            "association": {"publicIp": public, "ipOwnerId": OWNER} if public else None}
