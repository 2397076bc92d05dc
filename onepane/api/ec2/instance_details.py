"""An instance's attributes, console and password, as EC2 tools read and change them. What
EC2 has and onepane's model does not (termination protection, the user data as sent) is kept
in the instance's annotations under `ec2.`."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from ...errors import OnepaneError
from ...inventory.paging import every
from ...model import Instance
from . import shapes
from .actions import (
    READ_ONLY,
    WRITE,
    Context,
    _instance,
    _tag_specs,
    action,
    deleted_with_instance,
    set_ec2_notes,
    tags_at_create,
)
from .image_attributes import keep as keep_image_attributes
from .root_volumes import root_kinds, root_volumes
from .settle import settle
from .wire import Ec2Error, members

ATTRIBUTES = ("instanceType", "kernel", "ramdisk", "userData", "disableApiTermination",
              "instanceInitiatedShutdownBehavior", "rootDeviceName", "blockDeviceMapping",
              "productCodes", "sourceDestCheck", "groupSet", "ebsOptimized", "sriovNetSupport",
              "enaSupport")
MUTABLE = {"disableApiTermination": "DisableApiTermination",
           "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
           "userData": "UserData"}


def ec2_notes(ctx: Context, inst: Instance) -> dict[str, Any]:
    return {k[4:]: v for k, v in ctx.core.annotations.get(inst.id).attributes.items()
            if k.startswith("ec2.")}


def set_notes(ctx: Context, inst: Instance, **values: Any) -> None:
    note = ctx.core.annotations.get(inst.id)
    attrs = {**note.attributes, **{f"ec2.{k}": v for k, v in values.items()}}
    ctx.core.annotations.put(inst.id, attrs, note.categories)


@action(READ_ONLY)
def DescribeInstanceAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = p.get("Attribute")
    if name not in ATTRIBUTES:
        raise Ec2Error("InvalidParameterValue", f"Attribute {name!r} is not one of "
                       f"{', '.join(ATTRIBUTES)}")
    inst = _instance(ctx, p.get("InstanceId") or "")
    if name in ("groupSet", "sourceDestCheck"):
        _one_interface(ctx, inst)
    notes = ec2_notes(ctx, inst)
    out: dict[str, Any] = {"instanceId": shapes.instance_id(inst.id)}
    value: Any
    if name == "instanceType":
        out["instanceType"] = {"value": inst.size}
    elif name in ("kernel", "ramdisk"):
        out[name] = {"value": None}
    elif name == "userData":
        out["userData"] = {"value": notes.get("userData")}
    elif name == "disableApiTermination":
        out["disableApiTermination"] = {"value": bool(notes.get("disableApiTermination"))}
    elif name == "instanceInitiatedShutdownBehavior":
        value = notes.get("instanceInitiatedShutdownBehavior", "stop")
        out["instanceInitiatedShutdownBehavior"] = {"value": value}
    elif name == "rootDeviceName":
        root = root_volumes(ctx, [inst]).get(inst.id)
        out["rootDeviceName"] = {"value": root.device if root else shapes.ROOT_DEVICE}
    elif name == "blockDeviceMapping":
        out["blockDeviceMapping"] = shapes.block_devices(
            inst, _volumes_of(ctx, inst), root_volumes(ctx, [inst]).get(inst.id),
            deleted_with_instance(ctx.core.annotations.all()))
    elif name == "groupSet":
        out["groupSet"] = [{"groupId": g.id, "groupName": g.name}
                           for g in ctx.core.security_groups.of(inst.id)]
    elif name == "sourceDestCheck":
        if not inst.network:
            raise Ec2Error("InvalidParameterCombination", "sourceDestCheck is an attribute of "
                           "instances in a VPC")
        out["sourceDestCheck"] = {"value": notes.get("sourceDestCheck", True)}
    elif name == "productCodes":
        out["productCodes"] = []
    else:
        out[name] = {"value": False}
    return out


@action(WRITE)
def ModifyInstanceAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Two shapes, as EC2 takes them: `Attribute` + `Value`, or one attribute's own parameter
    (`DisableApiTermination.Value`, `GroupId.N`, …); one attribute a call."""
    inst = _instance(ctx, p.get("InstanceId") or "")
    name = p.get("Attribute")
    given = _given_attribute(p, name)
    if "GroupId" in p or "SourceDestCheck" in p or name in ("groupSet", "sourceDestCheck"):
        _one_interface(ctx, inst)
    if "GroupId" in p:  # membership is onepane's to keep (groups are not enforced yet)
        if given or name is not None:
            raise Ec2Error("InvalidParameterCombination", "change one attribute at a time")
        _set_groups(ctx, inst, members(p, "GroupId"))
    elif "SourceDestCheck" in p or name == "sourceDestCheck":
        _set_source_dest_check(ctx, inst, (p.get("SourceDestCheck") or {}).get(
            "Value", p.get("Value")))
    elif "InstanceType" in p or name == "instanceType":
        typed = p.get("InstanceType")
        size = typed.get("Value") if isinstance(typed, dict) else None
        _set_type(ctx, inst, size or (p.get("Value") if name == "instanceType" else None))
    elif "BlockDeviceMapping" in p and not given and name is None:
        _set_delete_on_termination(ctx, inst, members(p, "BlockDeviceMapping"))
    else:
        _set_noted(ctx, inst, given, [k for k in ("BlockDeviceMapping", "Kernel", "Ramdisk",
                                                  "EbsOptimized") if k in p])
    return {"return": True}


def _set_delete_on_termination(ctx: Context, inst: Instance, mappings: list[Any]) -> None:
    """`BlockDeviceMapping.N.Ebs.DeleteOnTermination` of volumes attached to the instance:
    the one part of a mapping EC2 lets change on a running instance. Kept as a note on the
    volume; TerminateInstances deletes the volumes so marked once the instance is gone."""
    attached = {v.device: v for v in every(ctx.core.ops.volumes.list_volumes)
                if v.attached_to == inst.id}
    changes = []
    for m in mappings:
        device = m.get("DeviceName") if isinstance(m, dict) else None
        ebs = m.get("Ebs") if isinstance(m, dict) else None
        if not device or not isinstance(ebs, dict) or "DeleteOnTermination" not in ebs:
            raise Ec2Error("InvalidParameterCombination", "BlockDeviceMapping.N needs DeviceName "
                           "and Ebs.DeleteOnTermination; nothing else of it can change")
        vol = attached.get(device)
        if vol is None:
            raise Ec2Error("InvalidInstanceAttributeValue", f"no device is currently mapped at "
                           f"{device}")
        if ebs.get("VolumeId") not in (None, vol.id):
            raise Ec2Error("InvalidParameterValue", f"{device} holds {vol.id}, not "
                           f"{ebs['VolumeId']}")
        changes.append((vol.id, str(ebs["DeleteOnTermination"]).lower() == "true"))
    for volume_id, delete in changes:  # every mapping checked before any is changed
        set_ec2_notes(ctx, volume_id, deleteOnTermination=delete)


def _given_attribute(p: dict[str, Any], name: str | None) -> dict[str, dict[str, Any]]:
    """The attributes the call changes by their own parameters, or its Attribute + Value."""
    given = {k: p[v] for k, v in MUTABLE.items() if isinstance(p.get(v), dict)}
    if name is None:
        return given
    if name not in ATTRIBUTES:
        raise Ec2Error("InvalidParameterValue", f"Attribute {name!r} is not one of "
                       f"{', '.join(ATTRIBUTES)}")
    if given:
        raise Ec2Error("InvalidParameterCombination", "give Attribute and Value, or one "
                       "attribute's own parameter, not both")
    if "Value" not in p:
        raise Ec2Error("MissingParameter", "the request must contain the parameter Value")
    return {name: {"Value": p["Value"]}}


def _set_groups(ctx: Context, inst: Instance, groups: list[str]) -> None:
    sg = ctx.core.security_groups
    wanted = [sg.get(g).id for g in groups]
    sg.leave_all(inst.id)
    sg.join(inst.id, wanted, inst.location)


def _set_source_dest_check(ctx: Context, inst: Instance, value: Any) -> None:
    if not inst.network:
        raise Ec2Error("InvalidParameterCombination", "sourceDestCheck is an attribute of "
                       "instances in a VPC")
    set_notes(ctx, inst, sourceDestCheck=str(value).lower() == "true")


def _one_interface(ctx: Context, inst: Instance) -> None:
    """Groups and the source/destination check belong to interfaces: an instance's own stand
    for it only while it has no other (EC2 refuses them on the instance then)."""
    from .interfaces import has_others
    if has_others(ctx, inst.id):
        raise Ec2Error("InvalidInstanceID", f"{shapes.instance_id(inst.id)} has several "
                       "network interfaces: ask or change the interface "
                       "(Describe/ModifyNetworkInterfaceAttribute)")


def _set_type(ctx: Context, inst: Instance, size: Any) -> None:
    if not size:
        raise Ec2Error("MissingParameter", "the request must contain the new instance type")
    if inst.state.value != "stopped":
        raise Ec2Error("IncorrectInstanceState", "the instance type can change only while "
                       "it is stopped")
    settle(ctx.core, [ctx.core.ops.instances.resize_instance(inst.id, str(size)).id])


def _set_noted(ctx: Context, inst: Instance, given: dict[str, dict[str, Any]],
               others: list[str]) -> None:
    """The attributes onepane keeps as notes (termination protection, shutdown behaviour);
    the rest are refused by name."""
    if not given and not others:
        raise Ec2Error("InvalidParameterCombination", "name one attribute to change")
    if len(given) + len(others) > 1:
        raise Ec2Error("InvalidParameterCombination", "change one attribute at a time")
    if others or set(given) - set(MUTABLE):
        what = others[0] if others else next(iter(given))
        raise Ec2Error("UnsupportedOperation", f"onepane cannot change {what} of an existing "
                       "instance; make a new one")
    attr, body = next(iter(given.items()))
    value = body.get("Value")
    if attr == "disableApiTermination":
        if str(value).lower() not in ("true", "false"):
            raise Ec2Error("InvalidParameterValue", "DisableApiTermination is true or false")
        set_notes(ctx, inst, disableApiTermination=str(value).lower() == "true")
    elif attr == "instanceInitiatedShutdownBehavior":
        if value not in ("stop", "terminate"):
            raise Ec2Error("InvalidParameterValue", "InstanceInitiatedShutdownBehavior is stop "
                           "or terminate")
        set_notes(ctx, inst, instanceInitiatedShutdownBehavior=value)
    else:
        raise Ec2Error("UnsupportedOperation", "onepane hands user data to an instance when it "
                       "is created; changing it later would not reach it")


@action(WRITE)
def ResetInstanceAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """EC2 resets kernel, ramdisk and sourceDestCheck; every other attribute is refused."""
    name = p.get("Attribute")
    if name not in ("kernel", "ramdisk", "sourceDestCheck"):
        raise Ec2Error("InvalidParameterValue", f"Attribute {name!r}: only kernel, ramdisk and "
                       "sourceDestCheck can be reset")
    inst = _instance(ctx, p.get("InstanceId") or "")
    if name == "sourceDestCheck":
        if not inst.network:
            raise Ec2Error("InvalidParameterCombination", "sourceDestCheck is an attribute of "
                           "instances in a VPC")
        _one_interface(ctx, inst)
        set_notes(ctx, inst, sourceDestCheck=True)
    return {"return": True}


@action(READ_ONLY)
def GetConsoleOutput(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    inst = _instance(ctx, p.get("InstanceId") or "")
    try:
        text = str(ctx.core.ops.instances.console(inst.id).get("output", ""))
    except OnepaneError:
        text = ""  # a location without consoles: EC2 answers with no output, not an error
    return {"instanceId": shapes.instance_id(inst.id), "timestamp": datetime.now(UTC),
            "output": base64.b64encode(text.encode()[-65536:]).decode()}


@action(READ_ONLY)
def GetPasswordData(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Windows' generated password: onepane's instances have none, so it is empty (as EC2's
    is for every Linux instance)."""
    inst = _instance(ctx, p.get("InstanceId") or "")
    return {"instanceId": shapes.instance_id(inst.id), "timestamp": datetime.now(UTC),
            "passwordData": ""}


def _volumes_of(ctx: Context, inst: Instance) -> list[Any]:
    from ...inventory.paging import every
    return [v for v in every(ctx.core.ops.volumes.list_volumes, location=inst.location)
            if v.attached_to == inst.id]


@action(WRITE)
def CreateImage(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """The instance's disk becomes a catalog image, replicated back to its location (VM
    locations; elsewhere the reason is the answer)."""
    inst = _instance(ctx, p.get("InstanceId") or "")
    name = p.get("Name") or ""
    if not name or len(name) > 128:
        raise Ec2Error("InvalidParameterValue", "Name is 1-128 characters")
    if inst.provider_id is None:
        raise Ec2Error("IncorrectInstanceState", "the instance is not made yet")
    if root_kinds(ctx).get(inst.location) == "instance-store":  # EC2's answer for these
        raise Ec2Error("InvalidParameterValue", f"{shapes.instance_id(inst.id)} is "
                       f"instance-store backed (at {inst.location} it has no disk of its own "
                       "to make an image of): upload an app image instead")
    # EC2 also tags the EBS snapshots behind the image; onepane's image is a disk of its
    # catalog, with no snapshot made: those tags are checked and apply to nothing
    tags = _tag_specs(p, "image", made_none=("snapshot",))
    from ...model import slug
    description = str(p.get("Description") or "")
    if len(description) > 255:
        raise Ec2Error("InvalidParameterValue", "Description is at most 255 characters")
    img = ctx.core.catalog.capture(inst.location, inst.provider_id, slug(name) or "image")
    tags_at_create(ctx, p, "image", "other", img.id, tags)
    if description:  # DescribeImageAttribute's description, as ModifyImageAttribute keeps it
        keep_image_attributes(ctx, img.id, description=description)
    return {"imageId": img.id}
