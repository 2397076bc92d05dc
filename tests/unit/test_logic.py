"""Pure logic: retry policy, config parsing, the EC2 adapter's parameter fix, cursors, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from onepane.config import load_settings
from onepane.errors import InvalidInput, PermanentProviderError, TransientProviderError
from onepane.inventory.paging import decode_cursor, encode_cursor
from onepane.providers.cloud import translate
from onepane.providers.ec2_compat import one_based
from onepane.retry import with_retry
from onepane.server import check_dev_mode


def test_retry_until_success_and_not_on_permanent() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientProviderError("busy")
        return "ok"
    assert with_retry(flaky, sleep=lambda _: None) == "ok" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise PermanentProviderError("no")
    calls.clear()
    with pytest.raises(PermanentProviderError):
        with_retry(broken, sleep=lambda _: None)
    assert len(calls) == 1


def test_retry_backoff_is_bounded_and_gives_up() -> None:
    delays: list[float] = []

    def always() -> None:
        raise TransientProviderError("busy")
    with pytest.raises(TransientProviderError):
        with_retry(always, attempts=6, base=0.1, cap=0.3, sleep=delays.append)
    assert len(delays) == 5 and all(0 <= d <= 0.3 for d in delays)


def test_config_file_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "onepane.toml"
    cfg.write_text('api_port = 9999\n[locations.dc-x]\nprovider = "local"\nlabels = {pci = "yes"}\n')
    s = load_settings(cfg)
    assert s.api_port == 9999 and [loc.name for loc in s.locations] == ["dc-x"]
    assert s.locations[0].labels == {"pci": "yes"}
    assert [loc.name for loc in load_settings(None).locations] == ["dc-a", "dc-b"]
    cfg.write_text('[locations.dc-x]\nprovider = "mainframe"\n')
    with pytest.raises(InvalidInput, match=r"locations\.dc-x\.provider"):  # by name
        load_settings(cfg)
    cfg.write_text("api_port = = 1")
    with pytest.raises(InvalidInput, match=r"onepane\.toml"):
        load_settings(cfg)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_dev_mode_only_on_loopback(tmp_path: Path) -> None:
    check_dev_mode(load_settings(None, dev=True, api_host="127.0.0.1"))
    with pytest.raises(InvalidInput, match="loopback"):
        check_dev_mode(load_settings(None, dev=True, api_host="0.0.0.0"))


def test_one_based_rewrites_only_zero_based_lists() -> None:
    assert one_based({"ResourceId.0": "a", "Tag.0.Key": "k", "Tag.1.Key": "j",
                      "InstanceId.1": "i"}) == {
        "ResourceId.1": "a", "Tag.1.Key": "k", "Tag.2.Key": "j", "InstanceId.1": "i"}


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor("inst-1")) == "inst-1"
    with pytest.raises(InvalidInput):
        decode_cursor("%%%")


def test_libcloud_errors_are_sorted() -> None:
    assert isinstance(translate(ConnectionRefusedError("x")), TransientProviderError)
    assert isinstance(translate(Exception("RequestLimitExceeded: slow down")), TransientProviderError)
    assert isinstance(translate(Exception("InvalidAMIID.NotFound: no")), PermanentProviderError)


def test_storage_5xx_is_transient_and_retried() -> None:
    from libcloud.common.types import LibcloudError

    from onepane.errors import PermanentProviderError, TransientProviderError
    from onepane.providers.cloud import translate
    assert isinstance(translate(LibcloudError("Unexpected status code, status_code=503")),
                      TransientProviderError)
    assert isinstance(translate(LibcloudError("Unexpected status code, status_code=403")),
                      PermanentProviderError)


def test_global_options_work_anywhere_on_the_command_line() -> None:
    from onepane.cli import hoist_global_options
    assert hoist_global_options(["keys", "create", "laptop", "--role", "operator", "-o", "json"]) \
        == ["-o", "json", "keys", "create", "laptop", "--role", "operator"]
    assert hoist_global_options(["instances", "list", "--url", "http://x", "--token=t"]) \
        == ["--url", "http://x", "--token=t", "instances", "list"]
    # `images export -o FILE` keeps its own -o
    assert hoist_global_options(["images", "export", "img-1", "-o", "out.ova"]) \
        == ["images", "export", "img-1", "-o", "out.ova"]


def test_an_empty_spec_says_so() -> None:
    from onepane.spec import parse_spec
    with pytest.raises(InvalidInput, match="the spec is empty"):
        parse_spec("")


def test_an_app_in_two_forms_names_its_image_and_size_per_location() -> None:
    """Issue 34: a container at a docker location, the same app as a process elsewhere."""
    from onepane.spec import parse_spec
    spec = parse_spec({"name": "mix", "image": "img-1", "size": "docker.nano",
                       "images": {"dc-a": "httpecho"}, "sizes": {"dc-a": "nano"},
                       "replicas": {"dc-c": 1, "dc-a": 1}})
    assert (spec.image_at("dc-a"), spec.size_at("dc-a")) == ("httpecho", "nano")
    assert (spec.image_at("dc-c"), spec.size_at("dc-c")) == ("img-1", "docker.nano")
    with pytest.raises(InvalidInput, match=r"images names \['dc-x'\] without replicas"):
        parse_spec({"name": "mix", "image": "img-1", "images": {"dc-x": "httpecho"},
                    "replicas": {"dc-a": 1}})


def test_table_columns_say_their_units() -> None:
    """Issue 31: `p50_ms`, `heard_s_ago`-style keys read as words with units in tables."""
    from onepane.cli import header
    assert header("downtime_ms") == "downtime (ms)"
    assert header("heartbeat_age_s") == "heartbeat age (s)"
    assert header("disk_bytes") == "disk (bytes)" and header("size_gb") == "size (GB)"
    assert header("remaining_pct") == "remaining (%)" and header("api_url") == "api url"
    assert header("name") == "name"


def test_the_sla_reads_the_same_in_every_table() -> None:
    """Issue 31: a deployment below its SLA was `measuring` in the table while the alerts said
    `below SLA` (a restart's warm-up pauses the measuring, not the violation)."""
    from onepane.cli import sla_text
    sla = {"availability": 97.5, "target": 99.9, "measuring": True, "violated": True}
    assert sla_text(sla) == "below SLA: 97.5% of 99.9%"
    assert sla_text({**sla, "violated": False}) == "measuring (warm-up)"
    assert sla_text({**sla, "violated": False, "measuring": False}) == "97.5% of 99.9%"
