"""Key pairs, security groups and snapshots in EC2's shapes, onto onepane's services."""

from __future__ import annotations

import re
from typing import Any

from ...inventory.firewall import ENFORCED_WHERE, Group, Rule
from ...inventory.keypairs import KeyPair, decode_material
from ...inventory.snapshots import Snapshot
from . import shapes
from .actions import (
    READ_ONLY,
    WRITE,
    Context,
    _tag_specs,
    action,
    tags_at_create,
)
from .filtering import FilterTable, key, tag_set
from .root_volumes import find_root, image_snapshots, is_image_snapshot
from .wire import Ec2Error, integer, members, required

# ---- key pairs --------------------------------------------------------------------------------


def _key(k: KeyPair) -> dict[str, Any]:
    return {"keyName": k.name, "keyFingerprint": k.fingerprint, "keyType": k.key_type,
            "keyPairId": "key-" + k.fingerprint.replace(":", "")[:17]}


def _no_tags(p: dict[str, Any]) -> None:
    """onepane's key pairs carry no tags: tags asked for at create are refused, never dropped
    (a tool that looks its key up by a tag would otherwise make another on every run)."""
    if members(p, "TagSpecification"):
        raise Ec2Error("InvalidParameterValue", "TagSpecification: onepane's key pairs take no "
                       "tags; create the key without them")


@action(WRITE)
def CreateKeyPair(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    _no_tags(p)
    kp, private = ctx.core.key_pairs.create(required(p, "KeyName"))
    return {**_key(kp), "keyMaterial": private}


@action(WRITE)
def ImportKeyPair(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = required(p, "KeyName")
    _no_tags(p)
    material = decode_material(p.get("PublicKeyMaterial") or "")
    if not material:
        raise Ec2Error("MissingParameter", "the request must contain PublicKeyMaterial")
    return _key(ctx.core.key_pairs.import_public(name, material))


@action(READ_ONLY)
def DescribeKeyPairs(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = KEY_FILTERS.parse(p)
    keys = ctx.core.key_pairs.find(members(p, "KeyName") or None)
    return {"keySet": KEY_FILTERS.apply(flt, (_key(k) for k in keys))}


KEY_FILTERS = FilterTable({"key-name": key("keyName"), "fingerprint": key("keyFingerprint"),
                           "key-pair-id": key("keyPairId")})


@action(WRITE)
def DeleteKeyPair(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    ctx.core.key_pairs.delete(required(p, "KeyName"))
    return {"return": True}


# ---- security groups --------------------------------------------------------------------------

def _permissions(rules: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ipProtocol": r["protocol"], "fromPort": r["from_port"], "toPort": r["to_port"],
             "groups": [{"groupId": g, "groupName": names.get(g, ""), "userId": shapes.OWNER}
                        for g in r["groups"]],
             "ipRanges": [{"cidrIp": c} for c in r["cidrs"]]} for r in rules]


def _group(g: Group, names: dict[str, str], tags: dict[str, str]) -> dict[str, Any]:
    return {"ownerId": shapes.OWNER, "groupId": g.id, "groupName": g.name,
            "groupDescription": g.description,
            "vpcId": _vpc_id(g.network),
            "ipPermissions": _permissions(g.ingress, names),
            "ipPermissionsEgress": _permissions(g.egress, names),
            # onepane's own word on it: the rules are kept, not enforced (see firewall.py)
            "tagSet": shapes.tag_set({**tags, "onepane:enforced": ENFORCED_WHERE})}


# what EC2 allows in a VPC security group's name and description
GROUP_TEXT = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+")


@action(WRITE)
def CreateSecurityGroup(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    vpc = p.get("VpcId") or None
    if vpc:
        from .vpc import all_vpcs
        if vpc not in {v["vpcId"] for v in all_vpcs(ctx)}:
            raise Ec2Error("InvalidVpcID.NotFound", f"the vpc ID '{vpc}' does not exist")
    name, description = required(p, "GroupName"), required(p, "GroupDescription")
    for field, value in (("GroupName", name), ("GroupDescription", description)):
        if len(value) > 255 or not GROUP_TEXT.fullmatch(value):
            raise Ec2Error("InvalidParameterValue", f"{field} {value!r}: up to 255 of a-z, A-Z, "
                           "0-9, spaces and ._-:/()#,@[]+=&;{}!$*")
    if name == "default" or name.startswith("sg-"):
        raise Ec2Error("InvalidParameterValue", f"GroupName {name!r} is reserved")
    tags = _tag_specs(p, "security-group")  # checked before anything is made
    g = ctx.core.security_groups.create(name, description, vpc)
    tags_at_create(ctx, p, "security-group", "other", g.id, tags)
    return {"groupId": g.id, "return": True, "tagSet": shapes.tag_set(tags)}


@action(WRITE)
def DeleteSecurityGroup(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    ctx.core.security_groups.delete(_group_id(ctx, p))
    return {"return": True}


@action(READ_ONLY)
def DescribeSecurityGroups(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    sg = ctx.core.security_groups
    groups = sg.find(members(p, "GroupId") or None)
    if wanted := members(p, "GroupName"):
        if missing := set(wanted) - {g.name for g in groups}:
            raise Ec2Error("InvalidGroup.NotFound", f"the security group {sorted(missing)[0]!r} "
                           "does not exist")
        groups = [g for g in groups if g.name in wanted]
    flt = GROUP_FILTERS.parse(p)
    names = {g.id: g.name for g in sg.find()}
    notes = ctx.core.annotations.all()

    def tags(g: Group) -> dict[str, str]:
        return dict(notes[g.id].attributes.get("ec2.tags") or {}) if g.id in notes else {}
    return {"securityGroupInfo": GROUP_FILTERS.apply(
        flt, (_group(g, names, tags(g)) for g in groups))}


GROUP_FILTERS = FilterTable({"group-id": key("groupId"), "group-name": key("groupName"),
                             "vpc-id": key("vpcId"), "description": key("groupDescription")},
                            tags=tag_set)


def _vpc_id(network: str | None) -> str | None:
    """A group's network: an EC2 VPC's id, or a onepane network's VPC."""
    if network is None or network.startswith("vpc-"):
        return network
    return "vpc-" + network.split("-", 1)[1]


def _group_id(ctx: Context, p: dict[str, Any]) -> str:
    if p.get("GroupId"):
        return str(ctx.core.security_groups.get(p["GroupId"]).id)
    if p.get("GroupName"):
        return ctx.core.security_groups.by_name(p["GroupName"]).id
    raise Ec2Error("MissingParameter", "the request must contain GroupId or GroupName")


def _rules(ctx: Context, p: dict[str, Any]) -> list[Rule]:
    perms = members(p, "IpPermissions")
    if not perms and p.get("IpProtocol"):  # the flat, older form
        perms = [{"IpProtocol": p["IpProtocol"], "FromPort": p.get("FromPort"),
                  "ToPort": p.get("ToPort"), "IpRanges": [{"CidrIp": p["CidrIp"]}]
                  if p.get("CidrIp") else [],
                  "Groups": [{"GroupName": p["SourceSecurityGroupName"]}]
                  if p.get("SourceSecurityGroupName") else []}]
    if not perms:
        raise Ec2Error("MissingParameter", "the request must contain IpPermissions")
    out = []
    for perm in perms:
        groups = []
        for g in members(perm, "Groups"):
            groups.append(g["GroupId"] if g.get("GroupId") else
                          ctx.core.security_groups.by_name(g.get("GroupName", "")).id)
        out.append(Rule(str(perm.get("IpProtocol", "")),
                        integer(perm, "FromPort", None, low=-1, high=65535),
                        integer(perm, "ToPort", None, low=-1, high=65535),
                        [r.get("CidrIp", "") for r in members(perm, "IpRanges")], groups))
    return out


def _change(ctx: Context, p: dict[str, Any], direction: str, add: bool) -> dict[str, Any]:
    ctx.core.security_groups.change(_group_id(ctx, p), direction, _rules(ctx, p), add=add)
    return {"return": True}


@action(WRITE)
def AuthorizeSecurityGroupIngress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, p, "ingress", True)


@action(WRITE)
def RevokeSecurityGroupIngress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, p, "ingress", False)


@action(WRITE)
def AuthorizeSecurityGroupEgress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, p, "egress", True)


@action(WRITE)
def RevokeSecurityGroupEgress(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, p, "egress", False)


# ---- snapshots --------------------------------------------------------------------------------

def _snapshot(s: Snapshot) -> dict[str, Any]:
    return {"snapshotId": s.id, "volumeId": s.volume_id, "status": s.state,
            "startTime": s.created_at, "progress": "100%" if s.state == "completed" else "0%",
            "ownerId": shapes.OWNER, "volumeSize": s.size_gb, "description": s.description,
            "encrypted": False, "tagSet": shapes.tag_set(s.tags)}


@action(WRITE)
def CreateSnapshot(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    volume_id = required(p, "VolumeId")
    root = find_root(ctx, volume_id)
    vol = root or ctx.core.ops.volumes.get_volume(shapes.to_onepane(volume_id, "volume"))
    tags = _tag_specs(p, "snapshot")  # checked before anything is made
    description = str(p.get("Description") or "")
    snap = ctx.core.snapshots.create_of_boot_disk(root.attached_to or "", root.id, root.size_gb,
                                                  description) if root else \
        ctx.core.snapshots.create(vol.id, description)
    if tags:
        tags_at_create(ctx, p, "snapshot", "snapshot", snap.id, tags)
        snap = ctx.core.snapshots.get(snap.id)
    return _snapshot(snap)


@action(READ_ONLY)
def DescribeSnapshots(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = SNAPSHOT_FILTERS.parse(p)
    ids = members(p, "SnapshotId")
    of_images = [s for s in image_snapshots(ctx) if not ids or s["snapshotId"] in ids]
    named = set(ids) - {s["snapshotId"] for s in of_images}
    snaps = ctx.core.snapshots.find(sorted(named)) if named or not ids else []
    return {"snapshotSet": SNAPSHOT_FILTERS.apply(flt, [*(_snapshot(s) for s in snaps),
                                                        *of_images])}


SNAPSHOT_FILTERS = FilterTable({
    "snapshot-id": key("snapshotId"), "volume-id": key("volumeId"), "status": key("status"),
    "description": key("description"), "owner-id": key("ownerId")}, tags=tag_set)


@action(WRITE)
def DeleteSnapshot(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    sid = required(p, "SnapshotId")
    if is_image_snapshot(ctx, sid):
        raise Ec2Error("InvalidSnapshot.InUse", f"the snapshot {sid} is the disk of an image: "
                       "deregister the image to delete it")
    ctx.core.snapshots.delete(sid)
    return {"return": True}


@action(READ_ONLY)
def DescribeSnapshotAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """A snapshot is its owner's alone (no sharing, no product codes): what Ansible's
    ec2_snapshot_info asks for every snapshot."""
    sid = required(p, "SnapshotId")
    if not is_image_snapshot(ctx, sid) and not ctx.core.snapshots.find([sid]):
        raise Ec2Error("InvalidSnapshot.NotFound", f"the snapshot '{sid}' does not exist")
    name = p.get("Attribute")
    if name not in ("createVolumePermission", "productCodes"):
        raise Ec2Error("InvalidParameterValue", "Attribute is createVolumePermission or "
                       "productCodes")
    return {"snapshotId": sid, name: []}
