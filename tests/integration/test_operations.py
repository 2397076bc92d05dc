"""The operations engine: jobs, retries, idempotency, isolation, drift, location checks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from onepane.config import Settings
from onepane.core import Core
from onepane.errors import InvalidInput, NotFound, OnepaneError, TransientProviderError
from onepane.model import InstanceCreate, InstanceState, LocationCreate
from onepane.providers.base import Capabilities, InstanceSpec, ObservedImage, ObservedInstance, ObservedSize
from onepane.providers.ec2 import Ec2Provider
from onepane.providers.local import LocalProvider
from tests.conftest import ec2_location
from tests.helpers import kill_instances, wait_for


class Flaky(LocalProvider):
    """A real local data center whose creates fail transiently first (logic under test: retry)."""

    def __init__(self, *a: Any, failures: int = 2, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.failures = failures
        self.calls = 0

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientProviderError("503 from the provider")
        return super().create_instance(spec)


class Hanging(LocalProvider):
    """A location whose provider hangs until released: the others must not wait for it."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.release = threading.Event()

    def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
        self.release.wait(30)
        raise TransientProviderError("never answered")

    def list_sizes(self) -> list[ObservedSize]:
        return [ObservedSize("small")]

    def list_images(self) -> list[ObservedImage]:
        return [ObservedImage("httpecho", "httpecho")]


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    c = Core(Settings(state_dir=tmp_path, locations=[
        LocationCreate(name="dc-a", provider="local"), LocationCreate(name="dc-b", provider="local")]))
    c.runner.backoff = 0.01
    c.start(background=False)
    yield c
    c.stop()
    kill_instances(tmp_path)


def create(core: Core, name: str, location: str = "dc-a", key: str | None = None) -> str:
    job = core.ops.instances.create_instance(InstanceCreate(name=name, location=location, image="httpecho",
                                                  size="small"), key)
    return job.id


def done(core: Core, job_id: str) -> Any:
    return wait_for(lambda: (j := core.ops.jobs.get_job(job_id)).status in ("succeeded", "failed") and j,
                    20, what=f"job {job_id}")


def test_idempotency_key_makes_one_server(core: Core) -> None:
    first = create(core, "web", key="k-1")
    second = create(core, "web", key="k-1")
    assert first == second
    assert done(core, first).status == "succeeded"
    assert len(core.ops.instances.list_instances().items) == 1
    assert len(core.registry.get("dc-a").list_instances()) == 1


def swap(core: Core, provider: LocalProvider, workers: int | None = None) -> None:
    """Put a (misbehaving) provider in place of dc-b's."""
    provider.setup()
    core.registry.remove("dc-b")
    core.registry.add(provider, workers=workers)


def test_transient_errors_are_retried(core: Core, tmp_path: Path) -> None:
    swap(core, Flaky("dc-b", tmp_path, failures=2))
    job = done(core, create(core, "web", "dc-b"))
    assert job.status == "succeeded" and job.attempts == 3
    assert core.ops.instances.get_instance(job.target).state == InstanceState.running


def test_permanent_failure_leaves_nothing_behind(core: Core, tmp_path: Path) -> None:
    swap(core, Flaky("dc-b", tmp_path, failures=99))
    job = done(core, create(core, "web", "dc-b"))
    assert job.status == "failed" and job.error["transient"] is True and job.attempts == 5
    assert core.ops.instances.list_instances().items == []
    with pytest.raises(InvalidInput):  # rejected up front: no job, no row
        core.ops.instances.create_instance(InstanceCreate(name="x", location="dc-a", image="nope",
                                                size="small"))
    with pytest.raises(NotFound):
        core.ops.instances.create_instance(InstanceCreate(name="x", location="dc-zz", image="httpecho",
                                                size="small"))
    assert core.ops.instances.list_instances().items == []
    kinds = [e.kind for e in core.events.list(limit=1000).items]
    assert "job.failed" in kinds


def test_a_hung_provider_does_not_stall_the_others(core: Core, tmp_path: Path) -> None:
    hung = Hanging("dc-b", tmp_path)
    swap(core, hung, workers=2)
    try:
        stuck = [create(core, f"stuck-{i}", "dc-b") for i in range(4)]  # fills its pool twice
        fine = [create(core, f"fine-{i}", "dc-a") for i in range(4)]
        for j in fine:
            assert done(core, j).status == "succeeded"
        assert all(core.ops.jobs.get_job(j).status in ("queued", "running") for j in stuck)
    finally:
        hung.release.set()


class Unanswering(Hanging):
    """An endpoint that accepts and never answers, even the quick questions (validate)."""

    def validate(self, image: str, size: str) -> None:
        self.release.wait(30)


def test_a_hung_endpoint_answers_503_for_its_own_requests_only(core: Core, tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    import onepane.inventory.validation as validation
    from onepane.errors import TransientProviderError as Transient
    monkeypatch.setattr(validation, "VALIDATE_TIMEOUT_S", 0.5)
    hung = Unanswering("dc-b", tmp_path)
    swap(core, hung)
    try:
        errors = []
        for i in range(6):  # the first two wait their deadline; the rest are refused at once
            with pytest.raises(Transient) as exc:
                create(core, f"stuck-{i}", "dc-b")
            errors.append(exc.value.detail)
        assert "did not answer within" in errors[0]
        assert all("is not answering" in e for e in errors[2:])
        assert core.ops.instances.list_instances(location="dc-b").items == []  # nothing recorded
        # and everyone else is served as usual meanwhile
        assert done(core, create(core, "fine", "dc-a")).status == "succeeded"
        assert [loc.name for loc in core.locations.list()] == ["dc-a", "dc-b"]
    finally:
        hung.release.set()


class Forgetful(Flaky):
    """A data center that cannot recognise a retried create (like Libcloud's dummy driver)."""

    capabilities = Capabilities.all_but(
        idempotent_create="it keeps no token by which a retried create finds the first one")


def test_a_create_is_never_retried_where_a_retry_could_make_a_second_server(
        core: Core, tmp_path: Path) -> None:
    flaky = Forgetful("dc-b", tmp_path, failures=1)
    swap(core, flaky)
    job = done(core, create(core, "web", "dc-b"))
    assert job.status == "failed" and job.attempts == 1 and flaky.calls == 1

    flaky.failures = 0
    job_id = create(core, "web2", "dc-b")
    assert done(core, job_id).status == "succeeded"
    with core.store.tx() as s:  # as if onepane died while the create was under way
        from onepane.store.tables import JobRow
        row = s.get(JobRow, job_id)
        assert row is not None
        row.status = "running"
    core.runner.resume()
    job = done(core, job_id)
    assert job.status == "failed" and "not run again" in job.error["detail"]
    assert flaky.calls == 2  # the interrupted create was not sent a second time


class Slow(LocalProvider):
    """A data center whose reboots take a while: a stop sent meanwhile must wait its turn."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.calls: list[str] = []
        self.rebooting = threading.Event()

    def reboot_instance(self, provider_id: str) -> None:
        self.calls.append("reboot")
        self.rebooting.set()
        threading.Event().wait(0.5)  # the provider is slow, not the test waiting on it
        super().reboot_instance(provider_id)  # (its own stop + start are not recorded)
        self.rebooting.clear()
        self.calls.append("rebooted")

    def stop_instance(self, provider_id: str) -> None:
        if not self.rebooting.is_set():
            self.calls.append("stop")
        super().stop_instance(provider_id)


def test_actions_on_one_instance_run_in_the_order_they_were_sent(core: Core, tmp_path: Path) -> None:
    slow = Slow("dc-b", tmp_path)
    swap(core, slow)
    inst = done(core, create(core, "web", "dc-b")).target
    reboot = core.ops.instances.instance_action(inst, "reboot")
    stop = core.ops.instances.instance_action(inst, "stop")
    assert done(core, reboot.id).status == "succeeded" and done(core, stop.id).status == "succeeded"
    assert slow.calls == ["reboot", "rebooted", "stop"]
    assert slow.list_instances()[0].state == InstanceState.stopped


def test_jobs_resume_after_a_restart(core: Core, tmp_path: Path) -> None:
    job_id = create(core, "web")
    done(core, job_id)
    with core.store.tx() as s:  # as if onepane died between recording and running a job
        from onepane.store.tables import JobRow
        row = s.get(JobRow, job_id)
        assert row is not None
        row.status = "running"
    assert core.runner.resume() == 1
    assert done(core, job_id).status == "succeeded"
    assert len(core.registry.get("dc-a").list_instances()) == 1  # no second server


def test_drift_is_detected_and_logged(core: Core, moto: str) -> None:
    core.locations.add(LocationCreate.model_validate(ec2_location(moto)))
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    rogue = ec2.run_instances(ImageId="ami-760aaa0f", MinCount=1, MaxCount=1,
                              InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    assert core.sync.sync_all()["aws-us-east-1"] == "ok"
    found = core.ops.instances.list_instances(location="aws-us-east-1").items
    assert [(i.provider_id, i.origin) for i in found] == [(rogue, "discovered")]
    ec2.terminate_instances(InstanceIds=[rogue])
    core.sync.sync_all()
    assert core.ops.instances.get_instance(found[0].id).state == InstanceState.missing
    kinds = [e.kind for e in core.events.list(kind="drift.", subject=found[0].id).items]
    assert kinds == ["drift.appeared", "drift.vanished"]
    # a local instance killed outside onepane is seen too
    job = done(core, create(core, "web"))
    provider = core.registry.get("dc-a")
    assert isinstance(provider, LocalProvider)
    provider.kill_instance(job.target)

    def seen_dead() -> bool:
        core.sync.sync_all()
        return core.ops.instances.get_instance(job.target).state == InstanceState.error
    wait_for(seen_dead, 10, what="the killed instance to show as error")
    assert any(e.kind == "instance.state" for e in core.events.list(subject=job.target).items)


def test_an_ec2_create_whose_reply_was_lost_makes_one_server(core: Core, moto: str) -> None:
    """A job's first attempt skips the search for an earlier server (nothing can have made
    one); a retry, after RunInstances went through but its answer did not, searches and finds
    it. Real moto; the lost answer is the fake part."""
    core.locations.add(LocationCreate.model_validate(ec2_location(moto)))
    real = core.registry.get("aws-us-east-1")
    assert isinstance(real, Ec2Provider)
    retries: list[bool] = []
    searched: list[str] = []

    class LostReply(Ec2Provider):
        def create_instance(self, spec: InstanceSpec) -> ObservedInstance:
            retries.append(spec.retry)
            obs = super().create_instance(spec)
            if len(retries) == 1:
                raise TransientProviderError("connection reset after RunInstances")
            return obs

        def _made_by(self, onepane_id: str) -> Any:
            searched.append(onepane_id)
            return super()._made_by(onepane_id)

    lossy = LostReply(real.location, real.driver_name, real.region, real.credentials,
                      real.options)
    core.registry.remove(real.location)
    core.registry.add(lossy)
    job = done(core, core.ops.instances.create_instance(InstanceCreate(
        name="web", location="aws-us-east-1", image="ami-760aaa0f", size="t2.micro")).id)
    assert job.status == "succeeded", job.error
    assert retries == [False, True] and searched == [job.target]
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    made = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]]
    assert made == [core.ops.instances.get_instance(job.target).provider_id]  # one server, and it is ours


def test_a_location_that_cannot_work_is_not_stored(core: Core, moto: str) -> None:
    bad = ec2_location(moto, "aws-bad")
    bad["options"] = {"host": "127.0.0.1", "port": 9, "secure": False}
    with pytest.raises(TransientProviderError):
        core.locations.add(LocationCreate.model_validate(bad))
    with pytest.raises(InvalidInput, match="driver"):
        core.locations.add(LocationCreate(name="x", provider="cloud", driver="no-such-cloud"))
    assert [loc.name for loc in core.locations.list()] == ["dc-a", "dc-b"]
    assert "aws-bad" not in core.registry.names()


def test_asking_for_a_missing_capability_is_refused(core: Core) -> None:
    from onepane.errors import Unsupported
    from onepane.model import VolumeCreate
    core.locations.add(LocationCreate(name="dummy", provider="cloud", driver="dummy"))
    assert core.locations.get("dummy").capabilities["volumes"] is False
    with pytest.raises(Unsupported, match=r"dummy cannot have volumes: Libcloud.s dummy driver "
                       r"creates no volumes") as exc:
        core.ops.volumes.create_volume(VolumeCreate(name="data", location="dummy", size_gb=1))
    assert exc.value.status == 422 and exc.value.field == "location"
    assert core.ops.volumes.list_volumes().items == []


def test_a_destroy_racing_a_sync_leaves_no_ghost(core: Core) -> None:
    inst = done(core, create(core, "web")).target
    provider = core.registry.get("dc-a")
    listing = provider.list_instances()  # the sync looked just before the destroy...
    assert done(core, core.ops.instances.destroy_instance(inst).id).status == "succeeded"
    with core.events.tx() as s:  # ...and folds what it saw after it
        core.sync._fold_instances(s, {"dc-a": (listing, None)})
    assert core.ops.instances.list_instances(location="dc-a").items == []
    assert not [e for e in core.events.list(kind="drift.", limit=100).items]


def test_listings_sort_on_any_column_and_page_without_gaps(core: Core) -> None:
    names = ["kiwi", "apple", "mango", "fig", "date", "banana", "cherry"]
    jobs = [create(core, n, "dc-a" if i % 2 else "dc-b") for i, n in enumerate(names)]
    for j in jobs:
        assert done(core, j).status == "succeeded"

    def walk(sort: str) -> list[str]:
        out, cursor = [], None
        while True:
            page = core.ops.instances.list_instances(sort=sort, limit=3, cursor=cursor)
            out += [i.name for i in page.items]
            if not (cursor := page.next_cursor):
                return out
    assert walk("name") == sorted(names)
    assert walk("-name") == sorted(names, reverse=True)
    by_location = walk("location")
    assert by_location[:3] == [names[i] for i in (1, 3, 5)]  # dc-a first, then as created
    assert sorted(walk("-created")) == sorted(names) and walk("-created")[0] == "cherry"
    with pytest.raises(InvalidInput):
        core.ops.instances.list_instances(sort="secret")


def test_a_burst_of_creates_asks_its_location_once(core: Core) -> None:
    """Concurrent creates of one image and size wait for one validation's answer, and share
    its refusal too."""
    provider = core.registry.get("dc-a")
    asked = 0
    gate = threading.Event()
    real = provider.validate

    def slow(image: str, size: str) -> None:
        nonlocal asked
        asked += 1
        gate.wait(10)
        real(image, size)
    provider.validate = slow  # type: ignore[method-assign]

    def create(i: int, image: str) -> Any:
        try:
            return core.ops.instances.create_instance(InstanceCreate(name=f"b{i}", location="dc-a",
                                                           image=image, size="nano"))
        except OnepaneError as exc:
            return exc

    def waiting(image: str) -> int:  # creates waiting for the one validation under way
        answer = core.ops.instances.validation._validating.get(("dc-a", image, "nano"))
        return len(answer._condition._waiters) if answer else 0  # type: ignore[attr-defined]

    for image in ("no-such-image", "httpecho"):
        gate.clear()
        before = asked
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(create, i, image) for i in range(6)]
            wait_for(lambda image=image: waiting(image) == 5, 10, what="five creates waiting")
            gate.set()
            answers = [f.result() for f in futures]
        assert asked == before + 1  # one question for six creates
        if image == "no-such-image":
            assert all(isinstance(a, InvalidInput) and a.field == "image" for a in answers)
        else:  # the six creates run to their end (their processes die with the test's)
            for a in answers:
                wait_for(lambda a=a: core.ops.jobs.get_job(a.id).status == "succeeded", 30,
                         what=f"job {a.id}")
