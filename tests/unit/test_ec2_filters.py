"""EC2 filters: one table per resource, one way to apply them (issue 30)."""

from __future__ import annotations

from typing import Any

import pytest

from onepane.api.ec2.filtering import FilterTable, each, key, tag_set
from onepane.api.ec2.wire import Ec2Error, decode_params

VOLS = [
    {"volumeId": "vol-1", "status": "in-use", "size": 8,
     "attachmentSet": [{"instanceId": "i-1", "device": "/dev/sdf"}],
     "tagSet": [{"key": "Name", "value": "data"}]},
    {"volumeId": "vol-2", "status": "available", "size": 100, "attachmentSet": [],
     "tagSet": []},
]
TABLE = FilterTable({"volume-id": key("volumeId"), "status": key("status"), "size": key("size"),
                     "attachment.instance-id": each("attachmentSet", "instanceId")}, tags=tag_set)


def ask(**named: list[str]) -> dict[str, Any]:
    """A query string's Filter.N.Name / Filter.N.Value.M, as clients send them, decoded."""
    pairs = []
    for n, (name, values) in enumerate(named.items(), start=1):
        pairs.append((f"Filter.{n}.Name",
                      name.replace("_", "-").replace("--", ".").replace("TAG-", "tag:")))
        pairs += [(f"Filter.{n}.Value.{m}", v) for m, v in enumerate(values, start=1)]
    return decode_params(pairs)


def ids(p: dict[str, Any]) -> list[str]:
    return [v["volumeId"] for v in TABLE.apply(TABLE.parse(p), VOLS)]


def test_values_are_alternatives_filters_all_match_and_wildcards_work() -> None:
    assert ids(ask(status=["in-use", "available"])) == ["vol-1", "vol-2"]
    assert ids(ask(status=["available"], volume_id=["vol-1"])) == []
    assert ids(ask(volume_id=["vol-?"], size=["1*"])) == ["vol-2"]
    assert ids(ask(attachment__instance_id=["i-1"])) == ["vol-1"]


def test_tags_filters_need_the_tag() -> None:
    assert ids(ask(TAG_Name=["da*"])) == ["vol-1"]
    assert ids(ask(tag_key=["Name"])) == ["vol-1"]
    assert ids(ask(tag_value=["nothing"])) == []


def test_an_unknown_filter_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(Ec2Error) as err:
        TABLE.parse(ask(colour=["red"]))
    assert err.value.code == "InvalidParameterValue"
    assert "'colour'" in err.value.message and "volume-id" in err.value.message
    assert "tag:<key>" in err.value.message
    untagged = FilterTable({"zone-name": key("zoneName")})
    with pytest.raises(Ec2Error):
        untagged.parse(ask(tag_key=["Name"]))
