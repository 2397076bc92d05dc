"""The standards' own conformance tools, as commands (slow, so outside ./test:
`pytest -m slow tests/e2e/test_conformance.py`). They fetch the tools from PyPI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_occi_compliance_tool_reaches_its_target() -> None:
    r = subprocess.run([str(ROOT / "conformance" / "occi.sh")], capture_output=True, text=True,
                       timeout=1800)
    last = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert last.startswith("RESULT occi_pocci_passed ") and int(last.split()[2]) >= 26
