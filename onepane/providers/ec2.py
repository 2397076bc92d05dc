"""EC2, and clouds that speak EC2's API, as a onepane location: what only EC2 offers beyond
Libcloud's common verbs.

- **Idempotent creates**: every server carries onepane's id as a tag and as its client token, so
  a retried create finds the server an earlier attempt made (by a tag filter: one small answer).
- **Disk images**: a catalog image goes to S3 and is registered as an AMI from there (real AWS
  feeds the same upload to ImportImage). Up to S3's single-PUT limit one streamed PUT whose ETag
  (S3's MD5 of what it received) must match ours; larger disks go multipart and are read back
  and hashed. An object or AMI an earlier attempt left is found and checked, not made again.
- **Subnets** name the network a server joins; **security groups** are EC2's own, one per
  onepane group (`onepane-<id>`), their inbound rules kept the same as onepane's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, NotFound, PermanentProviderError, TransientProviderError
from .base import Capabilities, Feature, InstanceSpec
from .cloud import ONEPANE_TAG, CloudProvider

EC2_CAN = (Feature.disk_images, Feature.boot_images, Feature.idempotent_create, Feature.user_data,
           Feature.firewall)


SINGLE_PUT_MAX = 5 * 2**30  # S3's limit for one PUT


class _Progress:
    """A file wrapper that reports how much has been read (for upload progress)."""

    def __init__(self, f: Any, total: int, progress: Callable[[float], None]) -> None:
        self.f, self.total, self.done, self.progress = f, total, 0, progress

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.f.read(n)
        self.done += len(data)
        self.progress(100.0 * self.done / self.total if self.total else 100.0)
        return data

    def __iter__(self) -> Any:
        while data := self.read(2**20):
            yield data


class Ec2Provider(CloudProvider):
    disk_formats = ("vmdk", "raw")

    def __init__(self, location: str, driver: str, region: str, credentials: dict[str, str],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(location, driver, region, credentials, options)
        self.capabilities = Capabilities({f: why for f, why in self.capabilities.missing.items()
                                          if f not in EC2_CAN})

    def _create_options(self, spec: InstanceSpec) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ex_metadata": {ONEPANE_TAG: spec.onepane_id, **spec.tags},
                                  "ex_clienttoken": spec.onepane_id}
        if spec.network:
            kwargs["ex_subnet"] = self._subnet(spec.network)
        if spec.security_groups:  # the cloud's own groups, named after onepane's (rules: enforce)
            ids = [self._cloud_group(g) for g in spec.security_groups]
            if spec.network:  # Libcloud takes group ids only together with a subnet
                kwargs["ex_security_group_ids"] = ids
            else:
                kwargs["ex_security_groups"] = [f"onepane-{g}" for g in spec.security_groups]
        return kwargs

    # ---- security groups: one cloud group per onepane group, its rules kept the same ----

    def _cloud_group(self, group_id: str) -> str:
        """The cloud group's id (made now if it is not there yet)."""
        name = f"onepane-{group_id}"
        drv: Any = self.driver
        found = [g for g in self._call(drv.ex_get_security_groups) if g.name == name]
        if found:
            return str(found[0].id)
        made = self._call(drv.ex_create_security_group, name, f"onepane security group {group_id}")
        return str(made["group_id"])

    def enforce(self, ingress: dict[str, list[dict[str, Any]]],
                groups: dict[str, dict[str, list[dict[str, Any]]]],
                egress: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """Each onepane group that instances here use has a cloud group of the same name
        prefix; its rules, both ways, are made the same as the onepane group's (the cloud
        enforces them, per group, so the per-instance pictures are not needed here)."""
        self.require(Feature.firewall, "security_group")
        drv: Any = self.driver
        for sg in self._call(drv.ex_get_security_groups):
            if not sg.name.startswith("onepane-sg-"):
                continue
            own = groups.get(sg.name.removeprefix("onepane-"), {})
            for direction, rules in (("ingress", sg.ingress_rules),
                                     ("egress", sg.egress_rules)):
                wanted = {_rule_key(r) for r in own.get(direction, []) if r.get("cidrs")}
                have = {_rule_key({"protocol": r["protocol"], "from_port": _int(r["from_port"]),
                                   "to_port": _int(r["to_port"]), "cidrs": r["cidr_ips"]})
                        for r in rules if r.get("cidr_ips")}
                grant = getattr(drv, f"ex_authorize_security_group_{direction}")
                revoke = getattr(drv, f"ex_revoke_security_group_{direction}")
                # an all-protocols rule has no ports: EC2 takes -1 for them (libcloud would
                # send the word None, which matches no rule)
                for change, keys in ((grant, wanted - have), (revoke, have - wanted)):
                    for proto, lo, hi, cidrs in keys:
                        self._call(change, sg.id, -1 if lo is None else lo,
                                   -1 if hi is None else hi, cidr_ips=list(cidrs), protocol=proto)

    def _tagged(self, onepane_id: str) -> dict[str, Any]:
        return {"ex_filters": {f"tag:{ONEPANE_TAG}": onepane_id}}

    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Callable[[float], None]) -> str:
        """EC2's way: the disk goes to S3 and is registered as an AMI from there. Against real
        AWS the same upload feeds ImportImage (not served by moto, which registers from
        ImageLocation).

        Up to S3's single-PUT limit the file is sent in one streamed PUT and S3's ETag (the MD5
        of what it received) must match ours: verified at the destination without reading the
        object back. Larger disks go multipart and are read back and hashed (SHA-256)."""
        ami_name = f"{name}-{image_id}"[:120]
        for img in self._call(self.driver.list_images, ex_owner="self",
                              ex_filters={"name": ami_name}):
            if img.name == ami_name:
                return str(img.id)  # registered by an earlier attempt
        storage = self._storage()
        bucket = self.options.get("image_bucket", "onepane-images")
        try:
            container = self._call(storage.get_container, bucket)
        except PermanentProviderError:
            container = self._call(storage.create_container, bucket)
        key = f"{image_id}-{sha256[:16]}.{fmt}"
        # An object left by an earlier attempt is read back and hashed before it is trusted.
        if self._remote_sha256(storage, container, key) != sha256:
            extra = {"meta_data": {"sha256": sha256}}
            size = path.stat().st_size
            if size <= self.options.get("single_put_max", SINGLE_PUT_MAX):
                progress(1.0)
                # verify_hash: libcloud compares S3's ETag with the MD5 of the file, and fails
                # on a mismatch (retried as transient by the job runner).
                self._call(storage.upload_object, str(path), container, key, extra=extra,
                           verify_hash=True)
            else:
                with path.open("rb") as f:
                    self._call(storage.upload_object_via_stream, _Progress(f, size, progress),
                               container, key, extra=extra)
                if self._remote_sha256(storage, container, key) != sha256:
                    raise TransientProviderError(f"{key}: checksum mismatch after the upload")
        progress(100.0)
        ami = self._call(self.driver.ex_register_image, ami_name,  # type: ignore[attr-defined]
                         description=f"onepane {image_id} sha256:{sha256}",
                         image_location=f"{bucket}/{key}", root_device_name="/dev/sda1")
        return str(ami.id)

    def delete_disk(self, provider_image_id: str) -> None:
        """Deregister the AMI import_disk registered (only one of onepane's: its description
        names the catalog image) and delete its object in the image bucket."""
        self.refuse_in_use(provider_image_id)
        mine = [i for i in self._call(self.driver.list_images, ex_owner="self")
                if i.id == provider_image_id
                and str(i.extra.get("description") or "").startswith("onepane img-")]
        if not mine:
            raise NotFound(f"no onepane image {provider_image_id!r} at {self.location}",
                           field="image")
        location = str(mine[0].extra.get("image_location") or "")
        self._call(self.driver.delete_image, mine[0])
        bucket, _, key = location.partition("/")
        if bucket == self.options.get("image_bucket", "onepane-images") and key:
            storage = self._storage()
            try:
                obj = self._call(storage.get_object, bucket, key)
            except PermanentProviderError:
                return  # already gone
            self._call(storage.delete_object, obj)

    def _storage(self) -> Any:
        from libcloud.storage.providers import get_driver as storage_driver
        from libcloud.storage.types import Provider as StorageProvider
        kwargs = {k: self.options[k] for k in ("host", "port", "secure") if k in self.options}
        return storage_driver(StorageProvider.S3)(self.credentials.get("key"),
                                                  self.credentials.get("secret"),
                                                  region=self.region, **kwargs)

    def _remote_sha256(self, storage: Any, container: Any, key: str) -> str | None:
        """Read the object back and hash it: what arrived, not what was meant to."""
        try:
            obj = storage.get_object(container.name, key)
        except Exception:
            return None
        h = hashlib.sha256()
        for chunk in self._call(storage.download_object_as_stream, obj, chunk_size=2**20):
            h.update(chunk)
        return h.hexdigest()

    def _subnet(self, subnet_id: str) -> Any:
        for s in self._call(self.driver.ex_list_subnets):  # type: ignore[attr-defined]
            if s.id == subnet_id:
                return s
        raise InvalidInput(f"no subnet {subnet_id!r} at {self.location}", field="network")

def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _rule_key(r: dict[str, Any]) -> tuple[str, int | None, int | None, tuple[str, ...]]:
    proto = "-1" if r["protocol"] in ("-1", "all") else str(r["protocol"])
    return (proto, r.get("from_port"), r.get("to_port"), tuple(sorted(r.get("cidrs") or [])))
