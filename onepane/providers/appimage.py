"""App images: what a `local`/`netns` data center runs as an instance.

An app image is a directory (or a .tar.gz of one) holding `onepane-app.json`:

    {"name": "web", "command": ["{python}", "server.py"], "port": "auto",
     "health_path": "/healthz", "env": {"GREETING": "hi"}}

`{python}` is onepane's own interpreter, `{host}`/`{port}` the address the instance must bind;
the same values arrive as HOST and PORT in the environment.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidInput
from ..model import NAME_PATTERN

MANIFEST = "onepane-app.json"
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


class AppManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    port: int | Literal["auto"] = "auto"
    health_path: str | None = Field(default="/", pattern=r"^/")
    protocol: Literal["http", "tcp"] = "http"
    env: dict[str, str] = Field(default_factory=dict)


def read_manifest(app_dir: Path) -> AppManifest:
    path = app_dir / MANIFEST
    if not path.is_file():
        raise InvalidInput(f"app image {app_dir.name!r} has no {MANIFEST}", field="image")
    try:
        return AppManifest.model_validate(json.loads(path.read_bytes().decode("utf-8")))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{MANIFEST}: not UTF-8 ({exc.reason})", field="image") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{MANIFEST}: line {exc.lineno}: {exc.msg}", field="image") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise InvalidInput(f"{MANIFEST}: {where}: {err['msg']}", field=f"manifest.{where}") from exc


def installed(images_dir: Path) -> list[AppManifest]:
    """The app images installed in `images_dir`, by name; a folder whose manifest does not
    read is not one (a half-installed upload, or damage)."""
    out = []
    for d in sorted(images_dir.iterdir()) if images_dir.exists() else []:
        if d.is_dir() and not d.name.startswith("."):
            with contextlib.suppress(InvalidInput):
                out.append(read_manifest(d))
    return out


def install_app_image(source: Path, images_dir: Path) -> AppManifest:
    """Validate and copy an app image into a location's image store, all or nothing."""
    images_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images_dir, prefix=".incoming-") as tmp:
        staged = Path(tmp) / "app"
        if source.is_dir():
            shutil.copytree(source, staged, symlinks=False)
        elif tarfile.is_tarfile(source):
            if source.stat().st_size > MAX_ARCHIVE_BYTES:
                raise InvalidInput(f"archive is larger than {MAX_ARCHIVE_BYTES} bytes", field="image")
            _safe_extract(source, staged)
        else:
            raise InvalidInput(f"{source.name}: not a directory or a tar archive", field="image")
        manifest = read_manifest(staged)
        target = images_dir / manifest.name
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return manifest


def _safe_extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, "..", links out of dest and devices.
            tar.extractall(dest, filter="data")
    except (tarfile.FilterError, tarfile.TarError) as exc:
        raise InvalidInput(f"{archive.name}: unsafe or broken archive: {exc}", field="image") from exc
    # Accept archives made of the directory itself ("web/onepane-app.json").
    entries = list(dest.iterdir())
    if not (dest / MANIFEST).exists() and len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(dest / child.name)
        inner.rmdir()
