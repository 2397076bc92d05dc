"""Wrong credentials against a real endpoint that checks them (moto with IAM auth switched on)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onepane.errors import ProviderAuthError
from onepane.providers.ec2 import Ec2Provider
from tests.conftest import VENV_BIN
from tests.helpers import free_port, port_open, wait_for


@pytest.fixture
def strict_moto(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 30, what="moto_server")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_wrong_credentials_are_a_clear_permanent_error(strict_moto: int) -> None:
    p = Ec2Provider("aws", "ec2-compat", "us-east-1", {"key": "AKIDWRONG", "secret": "nope"},
                      {"host": "127.0.0.1", "port": strict_moto, "secure": False})
    with pytest.raises(ProviderAuthError, match="credentials rejected") as exc:
        p.check()
    assert "nope" not in str(exc.value)  # the secret never appears in the error
