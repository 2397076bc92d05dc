"""The few calls every vm-location module makes to libvirt and qemu-img, and how their errors
become onepane's: a leaf module, so that the provider, its volumes, its hosts and its moves all
import it without importing each other."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

from ...errors import NotFound, OnepaneError, PermanentProviderError, TransientProviderError

DISK_TARGETS = [f"vd{c}" for c in "abcdefghijklmnop"]


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError as exc:
        raise PermanentProviderError("vm locations need libvirt-python (pip install "
                                     "'onepane[vm]'; ./run installs it)") from exc
    # libvirt prints every error to stderr by default; onepane reports them itself.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def translate(exc: Exception) -> OnepaneError:
    lv = _libvirt()
    code = exc.get_error_code() if isinstance(exc, lv.libvirtError) else None
    if code in (lv.VIR_ERR_NO_DOMAIN,):
        return NotFound(str(exc))
    if code in (lv.VIR_ERR_NO_CONNECT, lv.VIR_ERR_RPC, lv.VIR_ERR_SYSTEM_ERROR,
                lv.VIR_ERR_OPERATION_TIMEOUT, lv.VIR_ERR_AGENT_UNRESPONSIVE):
        return TransientProviderError(f"libvirt: {exc}")
    return PermanentProviderError(f"libvirt: {exc}")


@contextlib.contextmanager
def libvirt_errors() -> Iterator[None]:
    """libvirt's errors as onepane's (NotFound, transient, permanent)."""
    lv = _libvirt()
    try:
        yield
    except lv.libvirtError as exc:
        raise translate(exc) from exc


def _qemu_img(*args: str) -> None:
    proc = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PermanentProviderError(f"qemu-img {args[0]}: {proc.stderr.strip()}")
