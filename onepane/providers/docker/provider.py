"""A container data center: one or more Docker Engine hosts that onepane reaches over the
network (TCP with mutual TLS), never a socket of its own machine.

An instance is a container named by its onepane id, labelled with what onepane knows of it
(`onepane.id`, its name, size, image and tags), so the container is its own record: a restarted
onepane, or a dockerd that restarted, finds its containers by label and adopts them rather than
making twins. A size is a CPU and memory limit; the image's first exposed port is published on
the host's address at a port dockerd picks, and that is where the traffic manager and health
checks reach it. Placement: the answering host that has the image, with the fewest replicas of
the same deployment, then the most memory not promised to containers.

A host that stops answering keeps what it ran in `last_seen`: those containers are reported
missing (so a deployment replaces them elsewhere), and destroying one is remembered and done
when the host answers again, so a host that comes back never adds a replica twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import InvalidInput, NotFound, PermanentProviderError, TransientProviderError
from ...model import InstanceState
from ..base import (
    CONTAINER_FORMAT,
    Capabilities,
    InstanceSpec,
    ObservedImage,
    ObservedInstance,
    ObservedSize,
    ObservedVolume,
    Provider,
)
from .engines import DockerEngines, parse_url, sdk_errors
from .hostview import IMAGE_REPO, HostView, host_rows, place
from .removals import Removals
from .sizes import CPU_PERIOD, SIZES
from .volumes import DockerVolumes

ID_LABEL = "onepane.id"
META_LABEL = "onepane.meta"
TAG_LABEL = "onepane.tag."
HOST_TAG = "onepane:host"
log = logging.getLogger(__name__)
STATES = {"running": InstanceState.running, "restarting": InstanceState.running,
          "paused": InstanceState.suspended, "created": InstanceState.stopped,
          "exited": InstanceState.stopped, "removing": InstanceState.stopped,
          "dead": InstanceState.error}


CAPABILITIES = Capabilities.all_but(
    snapshots="Docker's local volumes have no snapshots",
    networks="containers sit on each host's own bridge and are reached at the ports the "
             "host publishes; onepane networks are not built for containers yet",
    attach_network="containers sit on each host's own bridge (no onepane networks here)",
    app_images="onepane app folders do not run as containers yet: import a container "
               "image archive",
    capture_image="committing a container to an image is not built yet",
    keep_data="keeping a replaced container's volumes for its replacement is not built yet",
    firewall="security groups are not enforced on docker hosts yet (the host's own "
             "firewall is the operator's)",
    addresses="elastic addresses are not routed to docker hosts",
    user_data="an OVF environment has no place in a container (pass settings as the "
              "image's environment)",
    cut="the hosts' network is the operator's: onepane cannot cut it (drills cut a "
        "host's link in the lab)",
    live_migration="a container moves by being made again elsewhere (no checkpoint and "
                   "restore here)",
)


class HostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    url: str


class DockerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[HostSpec] = Field(min_length=1)
    stop_timeout: int = Field(default=5, ge=0, le=300)


def parse_options(location: str, options: dict[str, Any]) -> DockerOptions:
    try:
        opts = DockerOptions.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"location {location}: options.{where}: {err['msg']}",
                           field=f"options.{where}") from None
    names = [h.name for h in opts.hosts]
    if len(set(names)) != len(names):
        raise InvalidInput(f"location {location}: two docker hosts share a name",
                           field="options.hosts")
    for h in opts.hosts:
        parse_url(h.url, "options.hosts")
    return opts


class DockerProvider(Provider):
    disk_formats = (CONTAINER_FORMAT,)
    capabilities = CAPABILITIES

    def __init__(self, location: str, state_dir: Path, options: dict[str, Any],
                 credentials: dict[str, str]) -> None:
        super().__init__(location)
        self.options = parse_options(location, options)
        self.root = state_dir / "docker" / location
        self.engines = DockerEngines(location, self.host_urls, credentials)
        # host -> {container name -> its last observation}: what a silent host ran
        self.last_seen: dict[str, dict[str, ObservedInstance]] = {}
        self.removals = Removals(self.root / "remove-when-back.json", self.engines)
        self._resized_file = self.root / "resized.json"
        self._place = threading.Lock()
        self.view = HostView(self.engines)
        self.volumes = DockerVolumes(self)

    # ---- the location ----------------------------------------------------------------------

    def host_urls(self) -> dict[str, str]:
        return {h.name: h.url for h in self.options.hosts}

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.recovered += self.removals.carry_out()

    @sdk_errors
    def check(self) -> None:
        if not self.engines.up():
            raise TransientProviderError(f"no docker host of {self.location} answers: "
                                         + "; ".join(f"{h}: {why}" for h, why in
                                                     self.engines.down.items()))

    def problems(self) -> list[str]:
        return [f"docker host {h} does not answer: {why}" for h, why in self.engines.down.items()]

    def close(self) -> None:
        self.engines.close()

    @sdk_errors
    def teardown(self) -> None:
        """Every container and image onepane put on the hosts that answer."""
        for name in self.engines.up():
            c = self.engines.client(name)
            for ctr in c.containers.list(all=True, filters={"label": ID_LABEL}):
                with contextlib.suppress(Exception):
                    ctr.remove(force=True)
            for img in c.images.list(filters={"reference": f"{IMAGE_REPO}/*"}):
                with contextlib.suppress(Exception):
                    c.images.remove(img.id, force=True)

    def hosts(self) -> list[dict[str, Any]]:
        return host_rows(self)

    # ---- images and sizes ------------------------------------------------------------------

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize(name, cpu=cpus, memory_mb=mb)
                for name, (cpus, mb) in SIZES.items()]

    @sdk_errors
    def list_images(self) -> list[ObservedImage]:
        tags = {t for host in self.engines.up() for t in self.view.images_on(host)}
        return [ObservedImage(t, t) for t in sorted(tags)]

    @sdk_errors
    def validate(self, image: str, size: str) -> None:
        super().validate(image, size)
        known = {i.provider_id for i in self.list_images()}
        if image not in known:
            raise InvalidInput(f"unknown image {image!r} at {self.location}; available: "
                               f"{', '.join(sorted(known)) or 'none'} (replicate a catalog "
                               "container image here first)", field="image")

    @sdk_errors
    def import_disk(self, image_id: str, name: str, path: Path, fmt: str, sha256: str,
                    progress: Any) -> str:
        """The catalog's checked archive, loaded into every host that answers (the API's
        image load), and tagged with the catalog id: that tag is the image here."""
        if fmt != CONTAINER_FORMAT:
            raise InvalidInput(f"{self.location} runs container images; {name} is a {fmt} disk",
                               field="image")
        tag = f"{IMAGE_REPO}/{image_id.lower()}:1"
        hosts = self.engines.up()
        if not hosts:
            raise TransientProviderError(f"no docker host of {self.location} answers")
        for i, host in enumerate(hosts):
            c = self.engines.client(host)
            with path.open("rb") as f:
                loaded = c.images.load(f)
            if not loaded:
                raise PermanentProviderError(f"docker host {host} loaded nothing from {name}")
            loaded[0].tag(tag)
            self.view.imported(host)
            progress(100.0 * (i + 1) / len(hosts))
        return tag

    @sdk_errors
    def delete_disk(self, provider_image_id: str) -> None:
        """The catalog tag off every host that answers, and the image with it unless another
        tag holds it (Docker's own rule); a host that does not answer keeps it, unused."""
        if not provider_image_id.startswith(f"{IMAGE_REPO}/"):
            raise NotFound(f"no catalog image {provider_image_id!r} at {self.location}",
                           field="image")
        self.refuse_in_use(provider_image_id)
        found = False
        for host in self.engines.up():
            if provider_image_id in self.view.images_on(host):
                found = True
                self.engines.client(host).images.remove(provider_image_id)
            self.view.imported(host)
        if not found:
            raise NotFound(f"no image {provider_image_id!r} at {self.location}", field="image")

    # ---- instances -------------------------------------------------------------------------

    def list_instances(self) -> list[ObservedInstance]:
        # first: what was destroyed while its host was silent (setup's are events; these, the
        # log's: the locations service reads `recovered` at start only)
        for line in self.removals.carry_out():
            log.warning("%s: %s", self.location, line)
        out: list[ObservedInstance] = []
        for host in self.options.hosts:
            try:
                found = self.containers_on(host.name, everything=True)
            except TransientProviderError:
                # what a silent host ran: missing here, so deployments replace it elsewhere
                out += [_as_missing(o) for o in self.last_seen.get(host.name, {}).values()]
                continue
            except Exception as exc:  # the SDK's own errors: this host is unusable now
                self.engines.mark_down(host.name, str(exc)[:200])
                out += [_as_missing(o) for o in self.last_seen.get(host.name, {}).values()]
                continue
            seen = {o.provider_id: o for o in (self._observe(host.name, c) for c in found)}
            self.last_seen[host.name] = seen
            out += list(seen.values())
        return out

    def containers_on(self, host: str, everything: bool = False) -> list[dict[str, Any]]:
        """onepane's containers on a host, as one listing call gives them (the SDK's model
        objects would inspect each one: a call per container, on every sync and create)."""
        return list(self.engines.client(host).api.containers(
            all=everything, filters={"label": ID_LABEL}))

    def _observe(self, host: str, summary: dict[str, Any]) -> ObservedInstance:
        labels = summary.get("Labels") or {}
        meta = _meta(labels)
        name = (summary.get("Names") or ["/"])[0].lstrip("/")
        public = [p["PublicPort"] for p in summary.get("Ports") or [] if p.get("PublicPort")]
        return ObservedInstance(
            provider_id=name, name=str(meta.get("name", name)),
            state=STATES.get(summary.get("State", ""), InstanceState.unknown),
            image=str(meta.get("image", "")),
            size=self._resized().get(name) or str(meta.get("size", "")),
            addresses=[self.address(host)], ports={"app": int(public[0])} if public else {},
            tags={**(meta.get("tags") or {}), HOST_TAG: host}, onepane_id=labels.get(ID_LABEL))

    def address(self, host: str) -> str:
        return parse_url(self.host_urls()[host], "options.hosts").address

    def locate(self, provider_id: str) -> tuple[str, Any] | None:
        """(host, container) on the hosts that answer; None when none of them has it."""
        if "/" in provider_id or not provider_id:
            return None
        import docker
        for host in self.engines.up():
            with contextlib.suppress(docker.errors.NotFound):
                ctr = self.engines.client(host).containers.get(provider_id)
                if (ctr.labels or {}).get(ID_LABEL):
                    return host, ctr
        return None

    def located(self, provider_id: str) -> tuple[str, Any]:
        found = self.locate(provider_id)
        if found is None:
            raise NotFound(f"no instance {provider_id!r} at {self.location}")
        return found

    @sdk_errors
    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        self.validate(spec.image, spec.size)
        found = self.locate(spec.onepane_id) if spec.retry else None
        if found is not None:  # a retried create: the first one's container
            return self._observe(found[0], _summary(found[1].attrs))
        cpus, mb = SIZES[spec.size]
        with self._place:
            host = place(self, spec)
            c = self.engines.client(host)
            port = self.view.port_of(host, self.view.images_on(host)[spec.image])
            meta = {"name": spec.name, "image": spec.image, "size": spec.size, "tags": spec.tags}
            ctr = c.containers.create(
                spec.image, name=spec.onepane_id, init=True, detach=True,
                labels=labels_of(spec.onepane_id, meta, spec.tags),
                cpu_period=CPU_PERIOD, cpu_quota=int(cpus * CPU_PERIOD), mem_limit=mb * 2**20,
                memswap_limit=mb * 2**20,  # no swap: the size is what it gets
                ports={port: (self.address(host), None)} if port else {})
        try:
            ctr.start()
            ctr.reload()  # the port dockerd published
        except Exception:
            with contextlib.suppress(Exception):
                ctr.remove(force=True)
            raise
        obs = self._observe(host, _summary(ctr.attrs))
        self.last_seen.setdefault(host, {})[obs.provider_id] = obs
        return obs

    def size_label(self, summary: dict[str, Any]) -> str:
        name = (summary.get("Names") or ["/"])[0].lstrip("/")
        return self._resized().get(name) or str(_meta(summary.get("Labels") or {}).get("size"))

    @sdk_errors
    def destroy_instance(self, provider_id: str) -> None:
        found = self.locate(provider_id)
        if found is not None:
            found[1].remove(force=True)
            self.last_seen.get(found[0], {}).pop(provider_id, None)
            self.volumes.forget_instance(provider_id)
            return
        for host, seen in self.last_seen.items():
            if provider_id in seen and host in self.engines.down:
                self.removals.remember(host, provider_id)  # done when the host answers again
                seen.pop(provider_id, None)

    @sdk_errors
    def start_instance(self, provider_id: str) -> None:
        _, ctr = self.located(provider_id)
        if ctr.status == "paused":
            ctr.unpause()
        elif ctr.status != "running":
            ctr.start()

    @sdk_errors
    def stop_instance(self, provider_id: str) -> None:
        _, ctr = self.located(provider_id)
        if ctr.status == "paused":
            ctr.unpause()
        ctr.stop(timeout=self.options.stop_timeout)

    @sdk_errors
    def reboot_instance(self, provider_id: str) -> None:
        self.located(provider_id)[1].restart(timeout=self.options.stop_timeout)

    @sdk_errors
    def suspend_instance(self, provider_id: str) -> None:
        _, ctr = self.located(provider_id)
        if ctr.status == "running":
            ctr.pause()

    @sdk_errors
    def resume_instance(self, provider_id: str) -> None:
        _, ctr = self.located(provider_id)
        if ctr.status == "paused":
            ctr.unpause()

    @sdk_errors
    def resize_instance(self, provider_id: str, size: str) -> None:
        if size not in SIZES:
            raise InvalidInput(f"unknown size {size!r} at {self.location}; available: "
                               f"{', '.join(SIZES)}", field="size")
        _, ctr = self.located(provider_id)
        cpus, mb = SIZES[size]
        # live: Docker changes a running container's limits (the size shown is read from them)
        ctr.update(cpu_period=CPU_PERIOD, cpu_quota=int(cpus * CPU_PERIOD), mem_limit=mb * 2**20,
                   memswap_limit=mb * 2**20)
        resized = self._resized()  # a container's labels are fixed at create: kept here
        resized[provider_id] = size
        self.root.mkdir(parents=True, exist_ok=True)
        self._resized_file.write_text(json.dumps(resized))

    def _resized(self) -> dict[str, str]:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return dict(json.loads(self._resized_file.read_text()))
        return {}

    @sdk_errors
    def console_output(self, provider_id: str, max_bytes: int = 65536) -> str:
        _, ctr = self.located(provider_id)
        data: bytes = ctr.logs(tail=2000)
        return data[-max_bytes:].decode(errors="replace")

    @sdk_errors
    def list_volumes(self) -> list[ObservedVolume]:
        return self.volumes.observed()

    @sdk_errors
    def create_volume(self, name: str, size_gb: int) -> ObservedVolume:
        return self.volumes.create(name, size_gb)

    @sdk_errors
    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        self.volumes.attach(volume_id, instance_id, device)

    @sdk_errors
    def detach_volume(self, volume_id: str) -> None:
        self.volumes.detach(volume_id)

    @sdk_errors
    def delete_volume(self, volume_id: str) -> None:
        self.volumes.delete(volume_id)

    @sdk_errors
    def kill_instance(self, provider_id: str) -> None:
        self.located(provider_id)[1].kill()


def labels_of(onepane_id: str, meta: dict[str, Any], tags: dict[str, str]) -> dict[str, str]:
    """A container's labels: its onepane id, what onepane knows of it (one JSON label, read
    back as the record), and each tag as a label of its own (`onepane.tag.<key>`), so that
    `docker ps --filter label=onepane.tag.team=web` on the host finds what onepane shows."""
    return {ID_LABEL: onepane_id, META_LABEL: json.dumps(meta),
            "onepane.deployment": tags.get("onepane:deployment", ""),
            **{f"{TAG_LABEL}{k}": v for k, v in tags.items()}}


def _meta(labels: dict[str, str]) -> dict[str, Any]:
    with contextlib.suppress(ValueError, TypeError):
        value = json.loads(labels.get(META_LABEL) or "{}")
        if isinstance(value, dict):
            return value
    return {}


def _as_missing(obs: ObservedInstance) -> ObservedInstance:
    return ObservedInstance(obs.provider_id, obs.name, InstanceState.missing, obs.image,
                            obs.size, obs.addresses, obs.ports, obs.tags, obs.onepane_id)


def _summary(attrs: dict[str, Any]) -> dict[str, Any]:
    """A container's inspection in the shape of a listing's entry (what _observe reads)."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return {"Names": [attrs.get("Name") or "/"], "Labels": (attrs.get("Config") or {}).get("Labels"),
            "State": (attrs.get("State") or {}).get("Status", ""),
            "Ports": [{"PublicPort": int(b[0]["HostPort"])} for b in ports.values() if b]}
