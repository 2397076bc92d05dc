"""The inventory's services, each for one kind of resource, over one job queue, and the table
that tells the job runner which handler carries out each kind of job."""

from __future__ import annotations

from ..events import EventLog
from ..providers.base import Feature
from .instances import Instances
from .jobqueue import LIVE_MOVE, Jobs
from .jobs import Handler, JobRunner
from .locations import Locations
from .networks import Networks
from .providerimages import IMAGE_LIST_DEADLINE_S, ProviderImages
from .volumes import Volumes

__all__ = ["LIVE_MOVE", "Operations"]


class Operations:
    def __init__(self, events: EventLog, locations: Locations, runner: JobRunner,
                 answer_deadline: float = IMAGE_LIST_DEADLINE_S) -> None:
        self.events = events
        self.store = events.store
        self.locations = locations
        self.runner = runner
        self.jobs = Jobs(events, locations, runner)
        self.instances = Instances(events, locations, self.jobs)
        self.volumes = Volumes(events, locations, self.jobs, self.instances)
        self.networks = Networks(events, locations, self.jobs)
        self.images = ProviderImages(locations, answer_deadline)
        i, v, n = self.instances, self.volumes, self.networks
        handlers: dict[str, Handler] = {
            "instance.start": i._do_action, "instance.stop": i._do_action,
            "instance.reboot": i._do_action, "instance.suspend": i._do_action,
            "instance.resume": i._do_action, "instance.resize": i._do_resize,
            "instance.destroy": i._do_destroy,
            "volume.create": v._do_volume_create, "volume.attach": v._do_volume_attach,
            "volume.detach": v._do_volume_detach, "volume.delete": v._do_volume_delete,
            "network.create": n._do_network_create, "network.delete": n._do_network_delete,
        }
        for kind, handler in handlers.items():
            runner.register(kind, handler, self.jobs.on_failure)
        runner.register("instance.create", i._do_create, self.jobs.on_failure,
                        repeatable=lambda p: p.capabilities.supports(Feature.idempotent_create))
