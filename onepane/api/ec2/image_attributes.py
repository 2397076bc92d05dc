"""Image attributes as EC2 has them, for what Ansible's `ec2_ami_info` and the conformance
suite ask: a description and a launch permission (public or not) kept per image with its
tags (the image's annotation); kernel, ramdisk, product codes and the rest as onepane's images
are (none). One account owns everything, so a permission for another account is refused by
name rather than kept and never used."""

from __future__ import annotations

from typing import Any

from . import shapes
from .actions import READ_ONLY, WRITE, Context, action, set_ec2_notes
from .wire import Ec2Error, members, required

NOTE = "ec2.image"  # the annotation's key: {"description": str, "public": bool}
READABLE = ("description", "kernel", "ramdisk", "launchPermission", "productCodes",
            "blockDeviceMapping", "sriovNetSupport", "bootMode")


def known_image(ctx: Context, image_id: str) -> None:
    if image_id in {c.id for c in ctx.core.catalog.all()}:
        return
    if any(i.id == image_id for i in ctx.core.ops.images.list_images(limit=100_000)):
        return
    raise Ec2Error("InvalidAMIID.NotFound", f"the image id '[{image_id}]' does not exist")


def owned(ctx: Context, image_id: str) -> None:
    """The caller's images are onepane's catalog; a location's own are public and the
    location's (shapes.LOCATIONS_OWNER): their attributes are not the caller's to read or
    change, nor are they the caller's to deregister — EC2's AuthFailure, as for another
    account's public AMI."""
    if image_id in {c.id for c in ctx.core.catalog.all()}:
        return
    known_image(ctx, image_id)  # InvalidAMIID.NotFound when no location has it either
    raise Ec2Error("AuthFailure", f"{image_id} is a location's own image, not yours: its "
                   "attributes are the location's")


def kept(ctx: Context, image_id: str) -> dict[str, Any]:
    return dict(ctx.core.annotations.get(image_id).attributes.get(NOTE) or {})


def keep(ctx: Context, image_id: str, **values: Any) -> None:
    set_ec2_notes(ctx, image_id, image={**kept(ctx, image_id), **values})  # NOTE's key


def shown(attributes: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """DescribeImages' entry with what ModifyImageAttribute changed (`attributes`: the image's
    annotation, read once for every image by the caller)."""
    mine = attributes.get(NOTE) or {}
    if "description" in mine:
        shape["description"] = mine["description"]
    shape["isPublic"] = bool(mine.get("public", shape["isPublic"]))
    return shape


@action(WRITE)
def DeregisterImage(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """A catalog image (img-...) deleted as `onepane images delete` does: off every location
    and the catalog, refused (IncorrectState) while an instance or a deployment still uses
    it — EC2 lets running instances outlive their AMI, but a VM here boots from an overlay
    on the image's file. A location's own images are the location's to remove (AuthFailure)."""
    image_id = required(p, "ImageId")
    owned(ctx, image_id)
    ctx.core.catalog.delete(image_id)
    ctx.core.annotations.forget(image_id)  # its tags and attributes went with it
    return {"return": True}


@action(READ_ONLY)
def DescribeImageAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image_id, attribute = required(p, "ImageId"), required(p, "Attribute")
    if attribute not in READABLE:
        raise Ec2Error("InvalidRequest", f"the attribute {attribute!r} is not one of "
                       f"{', '.join(READABLE)}")
    owned(ctx, image_id)
    mine = kept(ctx, image_id)
    out: dict[str, Any] = {"imageId": image_id}
    if attribute == "description":
        out["description"] = {"value": mine.get("description", "")}
    elif attribute == "launchPermission":
        out["launchPermission"] = [{"group": "all"}] if mine.get("public") else []
    elif attribute == "productCodes":
        out["productCodes"] = []
    elif attribute == "blockDeviceMapping":
        out["blockDeviceMapping"] = [{"deviceName": shapes.ROOT_DEVICE, "ebs": {
            "deleteOnTermination": True, "volumeType": "standard", "encrypted": False}}]
    elif attribute == "bootMode":
        out["bootMode"] = {"value": "legacy-bios"}
    return out  # kernel, ramdisk, sriovNetSupport: none, so not in the answer (as EC2)


@action(WRITE)
def ModifyImageAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image_id = required(p, "ImageId")
    attribute = p.get("Attribute")
    description = (p.get("Description") or {}).get("Value") if isinstance(
        p.get("Description"), dict) else None
    launch = p.get("LaunchPermission") if isinstance(p.get("LaunchPermission"), dict) else None
    if attribute == "blockDeviceMapping":
        raise Ec2Error("InvalidParameter", "an image's block device mapping cannot be changed")
    if attribute not in (None, "description", "launchPermission"):
        raise Ec2Error("InvalidParameterCombination", f"the attribute {attribute!r} cannot be "
                       "modified; description and launchPermission can")
    if attribute is None and description is None and launch is None:
        raise Ec2Error("InvalidParameterCombination", "give Attribute with its value, "
                       "Description or LaunchPermission")
    if attribute == "description" and description is None:
        description = p.get("Value")
        if description is None:
            raise Ec2Error("MissingParameter", "the request must contain Value")
    adds: list[dict[str, Any]] = []
    removes: list[dict[str, Any]] = []
    if attribute == "launchPermission":
        op = p.get("OperationType")
        if op not in ("add", "remove"):
            raise Ec2Error("InvalidParameterCombination", "launchPermission needs "
                           "OperationType add or remove")
        who = [{"Group": g} for g in members(p, "UserGroup")] + \
            [{"UserId": u} for u in members(p, "UserId")]
        (adds if op == "add" else removes).extend(who)
    if launch is not None:
        adds += members(launch, "Add")
        removes += members(launch, "Remove")
    owned(ctx, image_id)
    for grant in adds + removes:
        if grant.get("Group") != "all":
            raise Ec2Error("UnsupportedOperation", "onepane has one account: an image is "
                           "launched by it, or by all (Group=all); no other account exists")
    values: dict[str, Any] = {}
    if description is not None:
        values["description"] = str(description)
    if adds or removes:
        values["public"] = bool(adds)
    keep(ctx, image_id, **values)
    return {"return": True}


@action(WRITE)
def ResetImageAttribute(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image_id, attribute = required(p, "ImageId"), required(p, "Attribute")
    if attribute != "launchPermission":
        raise Ec2Error("InvalidRequest", f"only launchPermission can be reset, not "
                       f"{attribute!r}")
    owned(ctx, image_id)
    keep(ctx, image_id, public=False)
    return {"return": True}
