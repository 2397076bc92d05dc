"""The health check a replica gets: the spec's, made patient with virtual machines."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import OnepaneError
from ..providers.base import Feature, Provider
from ..spec import DeploymentSpec, HealthCheck

VM_CHECK_TIMEOUT_S = 2.0


def runs_vms(provider: Callable[[str], Provider], location: str) -> bool:
    """Whether the location's replicas are virtual machines (slow to boot, slower to answer
    under load when emulated) rather than processes."""
    try:
        caps = provider(location).capabilities
    except OnepaneError:
        return False
    return not caps.supports(Feature.app_images)


def check_for(spec: DeploymentSpec, vm: bool) -> HealthCheck:
    """The spec's check; for VMs, a timeout of at least VM_CHECK_TIMEOUT_S unless the spec
    sets one: a guest that is busy (an emulated one above all) answers in hundreds of
    milliseconds, and 0.3 s rebooted guests that were merely working (issue 28)."""
    h = spec.health
    if "timeout" in h.model_fields_set or not vm:
        return h
    return h.model_copy(update={"timeout": max(h.timeout, VM_CHECK_TIMEOUT_S)})
