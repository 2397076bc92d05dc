"""onepane's records in the shapes of the EC2 2016-11-15 API.

IDs: onepane's time-ordered ids keep their hex part, so `inst-0193a...` is `i-0193a...` and a
network `net-0193a...` is both `vpc-0193a...` and its one subnet `subnet-0193a...`. Volume ids
(`vol-...`) are already EC2-shaped. Locations are availability zones of one region.
"""

from __future__ import annotations

from typing import Any

from ...model import Image, Instance, InstanceState, Location, Network, Volume
from .wire import Ec2Error

OWNER = "000000000000"
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


def instance(inst: Instance, index: int = 0) -> dict[str, Any]:
    private = inst.addresses[0] if inst.addresses else None
    public = inst.addresses[1] if len(inst.addresses) > 1 else None
    return {
        "instanceId": instance_id(inst.id),
        "imageId": inst.image,
        "instanceState": state_of(inst),
        "privateDnsName": "",
        "dnsName": "",
        "reason": "",
        "amiLaunchIndex": index,
        "productCodes": [],
        "instanceType": inst.size,
        "launchTime": inst.created_at,
        "placement": {"availabilityZone": inst.location, "groupName": "", "tenancy": "default"},
        "monitoring": {"state": "disabled"},
        "privateIpAddress": private,
        "ipAddress": public,
        "groupSet": [],
        "architecture": "x86_64",
        "rootDeviceType": "ebs",
        "blockDeviceMapping": [],
        "virtualizationType": "hvm",
        "hypervisor": "xen",
        "tagSet": tag_set(inst.tags),
    }


def reservation(insts: list[Instance]) -> dict[str, Any]:
    return {"reservationId": "r-" + insts[0].id.split("-", 1)[1], "ownerId": OWNER,
            "groupSet": [], "instancesSet": [instance(i, n) for n, i in enumerate(insts)]}


def volume(vol: Volume) -> dict[str, Any]:
    status = {"creating": "creating", "available": "available", "in-use": "in-use",
              "deleting": "deleting"}.get(vol.state, "error")
    attachments = []
    if vol.attached_to:
        attachments.append({"volumeId": vol.id, "instanceId": instance_id(vol.attached_to),
                            "device": vol.device or "", "status": "attached",
                            "attachTime": vol.created_at, "deleteOnTermination": False})
    return {"volumeId": vol.id, "size": vol.size_gb, "snapshotId": "",
            "availabilityZone": vol.location, "status": status, "createTime": vol.created_at,
            "attachmentSet": attachments, "volumeType": "standard", "encrypted": False,
            "tagSet": tag_set(vol.tags)}


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
            "tagSet": tag_set({"Name": net.name})}


def zone(loc: Location, region: str) -> dict[str, Any]:
    ok = loc.status in ("ok", "unknown")
    return {"zoneName": loc.name, "zoneId": loc.name, "zoneState": "available" if ok else "impaired",
            "regionName": region, "zoneType": "availability-zone", "optInStatus":
            "opt-in-not-required", "messageSet": [] if ok else [{"message": loc.status_detail or
                                                                  loc.status}]}


def image(img: Image) -> dict[str, Any]:
    return {"imageId": img.id, "imageLocation": f"{img.location}/{img.name}",
            "imageState": "available", "imageOwnerId": OWNER, "isPublic": False,
            "architecture": "x86_64", "imageType": "machine", "name": img.name,
            "rootDeviceType": "ebs", "virtualizationType": "hvm", "hypervisor": "xen",
            "tagSet": tag_set({"onepane:location": img.location})}
