"""The README's command blocks marked `<!-- readme-test -->` run as written, in order, in one
shell, against `onepane up` with the embedded default configuration: the README cannot drift
from the code. The only changes are the addresses (a free API port instead of 8640, a free
port instead of the data plane's 8081), so that a test never depends on which ports are free."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import VENV_BIN
from tests.helpers import free_port

MARK = "<!-- readme-test -->"
ROOT = Path(__file__).resolve().parents[2]


def readme_blocks(text: str) -> list[str]:
    """The body of each fenced block that directly follows the marker."""
    blocks = re.findall(re.escape(MARK) + r"\n```bash\n(.*?)\n```", text, flags=re.S)
    assert text.count(MARK) == len(blocks), "a marker not followed by a bash block"
    return blocks


def test_every_marked_readme_block_runs_on_the_default_setup(start_server: Any,
                                                             tmp_path: Path) -> None:
    server = start_server("")  # the embedded default: dc-a and dc-b
    plane = str(free_port())

    def here(text: str) -> str:
        return (text.replace("127.0.0.1:8640", f"127.0.0.1:{server.port}")
                .replace("127.0.0.1:8081", f"127.0.0.1:{plane}"))

    work = tmp_path / "checkout"  # what a user has after ./run: .venv, .onepane, examples
    shutil.copytree(ROOT / "examples", work / "examples")
    for f in (work / "examples").glob("*.yaml"):
        f.write_text(here(f.read_text()))
    (work / ".venv").symlink_to(VENV_BIN.parent)
    (work / ".onepane").symlink_to(server.state_dir)
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 4
    script = "set -euo pipefail\n" + "\n".join(here(b) for b in blocks) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPANE_")}
    env["COLUMNS"] = "200"
    r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert '"location": "dc-b"' in r.stdout  # the move reached the data plane
    assert "Traceback" not in r.stdout + r.stderr
