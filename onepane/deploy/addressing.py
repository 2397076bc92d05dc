"""Which instance an elastic address of a deployment reaches: one that runs at the
deployment's primary location. The traffic manager moves the primary on a failover; the
address router asks this every half second and so follows it."""

from __future__ import annotations

from ..errors import NotFound
from ..inventory.addresses import Target
from ..inventory.instances import Instances
from ..model import InstanceState
from .reconciler import TAG
from .service import Deployments


def serving_replica(deployments: Deployments, instances: Instances, name: str,
                    current: str | None) -> Target | None:
    """A running replica at the primary: the one the address reaches now if it still
    qualifies (an address does not hop between equal replicas), else the oldest by id."""
    try:
        primary = deployments.get(name).primary
    except NotFound:
        return None
    if primary is None:
        return None
    running = [i for i in instances.list_instances(location=primary, tags={TAG: name},
                                                   limit=1000).items
               if i.state == InstanceState.running and i.provider_id]
    if not running:
        return None
    pick = next((i for i in running if i.id == current), None) or min(running, key=lambda i: i.id)
    return pick.id, pick.location, str(pick.provider_id)


def instance_target(instances: Instances, instance_id: str) -> Target | None:
    try:
        inst = instances.get_instance(instance_id)
    except NotFound:
        return None
    if not inst.provider_id or inst.state in (InstanceState.missing, InstanceState.error):
        return None
    return inst.id, inst.location, inst.provider_id
