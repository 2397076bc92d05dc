"""Container image archives are untrusted input: what the checker takes and what it refuses
(real tar files, built here the way `docker save` and OCI layouts are; no daemon needed — the
e2e test loads one into real Docker hosts)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from onepane.errors import InvalidInput
from onepane.images.containers import check_archive, with_docker_manifest
from onepane.providers.docker.lab import _tar_bytes, busybox_archive, image_archive

CONFIG = {"Cmd": ["/bin/httpd", "-f"], "ExposedPorts": {"8080/tcp": {}}}


def tar_of(dest: Path, members: dict[str, bytes], special: list[tarfile.TarInfo] = ()) -> Path:  # type: ignore[assignment]
    with tarfile.open(dest, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special:
            tar.addfile(info)
    return dest


def members_of(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def refused(path: Path, match: str, **kw: object) -> None:
    with pytest.raises(InvalidInput, match=match) as exc:
        check_archive(path, "img.tar", **kw)  # type: ignore[arg-type]
    assert exc.value.field == "file"


def test_a_docker_save_archive_is_read_with_what_running_it_needs(tmp_path: Path) -> None:
    image = check_archive(busybox_archive(tmp_path / "bb.tar"), "bb.tar")
    assert image.tags == ["onepane-busybox:1"] and image.layers == 1
    assert image.ports == ["80/tcp"] and image.cmd[0] == "/bin/httpd"
    assert image.size > 1_000_000 and image.docker_manifest is None


def oci_layout(dest: Path, layer: bytes, tamper_blob: bool = False) -> Path:
    gz = gzip.compress(layer, mtime=0)
    config = json.dumps({"config": CONFIG, "rootfs": {
        "type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}}).encode()
    digest = {b: hashlib.sha256(b).hexdigest() for b in (gz, config)}
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": f"sha256:{digest[config]}"},
                           "layers": [{"digest": f"sha256:{digest[gz]}"}]}).encode()
    m_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "digest": f"sha256:{m_digest}",
        "annotations": {"io.containerd.image.name": "docker.io/library/web:2"}}]}).encode()
    stored = gz if not tamper_blob else gz[:20] + bytes([gz[20] ^ 1]) + gz[21:]  # one bit off
    blobs = {f"blobs/sha256/{digest[gz]}": stored,
             f"blobs/sha256/{digest[config]}": config, f"blobs/sha256/{m_digest}": manifest}
    return tar_of(dest, {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                         "index.json": index, **blobs})


def test_an_oci_layout_is_read_and_given_dockers_manifest_in_a_copy(tmp_path: Path) -> None:
    layer = _tar_bytes({"www/index.html": (b"hi", 0o644)}, {})
    src = oci_layout(tmp_path / "oci.tar", layer)
    before = src.read_bytes()
    image = check_archive(src, "oci.tar")
    assert image.tags == ["docker.io/library/web:2"] and image.ports == ["8080/tcp"]
    assert image.docker_manifest is not None and src.read_bytes() == before
    copy = tmp_path / "copy.tar"
    with_docker_manifest(src, copy, image.docker_manifest)
    again = check_archive(copy, "copy.tar")  # what a Docker engine loads: the same image
    assert again.config_digest == image.config_digest and again.docker_manifest is None
    refused(oci_layout(tmp_path / "bad.tar", layer, tamper_blob=True), "does not have the digest")


def test_paths_that_leave_the_archive_or_a_layer_are_refused(tmp_path: Path) -> None:
    good = members_of(busybox_archive(tmp_path / "bb.tar"))
    refused(tar_of(tmp_path / "a.tar", {**good, "../evil": b"x"}), "path that leaves")
    refused(tar_of(tmp_path / "b.tar", {**good, "/etc/evil": b"x"}), "path that leaves")
    out = tarfile.TarInfo("link")
    out.type, out.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    refused(tar_of(tmp_path / "c.tar", good, [out]), "link that leaves")
    for name, (member, link) in {
            "d": ("../../etc/cron.d/x", None), "e": ("etc/x", "../../../../etc/shadow")}.items():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as layer:
            info = tarfile.TarInfo(member)
            if link is not None:
                info.type, info.linkname = tarfile.LNKTYPE, link
                layer.addfile(info)
            else:
                info.size = 1
                layer.addfile(info, io.BytesIO(b"x"))
        refused(image_archive(tmp_path / f"{name}.tar", "x:1", buf.getvalue(), CONFIG),
                "leaves")
    dev = tarfile.TarInfo("dev/sda")
    dev.type = tarfile.BLKTYPE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as layer:
        layer.addfile(dev)
    refused(image_archive(tmp_path / "f.tar", "x:1", buf.getvalue(), CONFIG), "device")


def test_a_manifest_that_does_not_match_its_blobs_is_refused(tmp_path: Path) -> None:
    good = members_of(busybox_archive(tmp_path / "bb.tar"))
    manifest = json.loads(good["manifest.json"])
    config_name = manifest[0]["Config"]
    layer_name = manifest[0]["Layers"][0]
    missing = {**good, "manifest.json": json.dumps(
        [{**manifest[0], "Layers": ["nope/layer.tar"]}]).encode()}
    refused(tar_of(tmp_path / "a.tar", missing), "does not hold")
    other = dict(good)
    other[config_name] = good[config_name].replace(b'"amd64"', b'"arm64"')  # name says otherwise
    refused(tar_of(tmp_path / "b.tar", other), "does not have the digest")
    swapped = dict(good)
    swapped[layer_name] = _tar_bytes({"www/index.html": (b"not what was signed", 0o644)}, {})
    refused(tar_of(tmp_path / "c.tar", swapped), "does not match its digest")
    two = {**good, "manifest.json": json.dumps(manifest * 2).encode()}
    refused(tar_of(tmp_path / "d.tar", two), "exactly one image")
    refused(tar_of(tmp_path / "e.tar", {**good, "manifest.json": b"{not json"}), "not JSON")
    refused(tar_of(tmp_path / "f.tar", {"manifest.json": b"[]"}), "exactly one image")
    refused(busybox_archive(tmp_path / "g.tar"), "over the limit", max_bytes=1000)


def test_the_docker_sdks_errors_reach_callers_as_onepanes() -> None:
    """Issue 34: a Docker host's refusal is a 404/409/4xx-or-retry, never an unexplained 500."""
    import docker
    import requests

    from onepane.errors import Conflict, NotFound, PermanentProviderError, TransientProviderError
    from onepane.providers.docker.engines import sdk_errors

    def failing(exc: Exception) -> None:
        @sdk_errors
        def call() -> None:
            raise exc
        call()

    response = requests.Response()
    for status, kind in ((404, NotFound), (409, Conflict), (400, PermanentProviderError),
                         (500, TransientProviderError)):
        response.status_code = status
        error = (docker.errors.NotFound if status == 404 else docker.errors.APIError)(
            "boom", response=response, explanation=f"the daemon said {status}")
        with pytest.raises(kind, match=f"the daemon said {status}"):
            failing(error)
    with pytest.raises(TransientProviderError, match="connection"):
        failing(requests.ConnectionError("reset"))
    with pytest.raises(InvalidInput):  # onepane's own errors pass as they are
        failing(InvalidInput("bad", field="size"))
