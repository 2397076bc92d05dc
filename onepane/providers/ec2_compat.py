"""Libcloud's EC2 driver, adapted to EC2-compatible endpoints that are not AWS (moto, ...).

Why each fix exists (found driving moto's server with the stock driver): such endpoints answer
in a namespace without the trailing slash, reject zero-based list parameters, omit <return> on
some replies, add <Type> to errors, need InstanceId on DetachVolume and page DescribeInstances,
which libcloud's list_nodes() never follows.
Against real AWS use the plain `ec2` driver; none of this is needed there.
"""

from __future__ import annotations

import re
from typing import Any

from libcloud.compute.drivers import ec2 as lc_ec2
from libcloud.utils.xml import findall, findtext

_NS_FROM = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
_NS_TO = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
_BARE = re.compile(r"(<(\w+)Response [^>]*>)(<requestId>[^<]*</requestId></\2Response>)")
_ERROR_TYPE = re.compile(r"<Type>[^<]*</Type>")
_INDEXED = re.compile(r"^([A-Za-z]+)\.(\d+)(\..*)?$")


class CompatEC2Response(lc_ec2.EC2Response):
    def parse_body(self) -> Any:
        if isinstance(self.body, str):
            body = self.body.replace(_NS_FROM, _NS_TO, 1)
            self.body = _BARE.sub(r"\1<return>true</return>\3", body)
        return super().parse_body()

    def parse_error(self) -> Any:
        # Errors may carry a <Type> beside <Code> and <Message>; libcloud expects exactly two.
        if isinstance(self.body, str):
            self.body = _ERROR_TYPE.sub("", self.body)
        return super().parse_error()


def one_based(params: dict[str, Any]) -> dict[str, Any]:
    """ResourceId.0 / Tag.0.Key -> ResourceId.1 / Tag.1.Key, for lists libcloud starts at 0."""
    zero_based = {m[1] for k in params if (m := _INDEXED.match(k)) and m[2] == "0"}
    out = {}
    for key, value in params.items():
        m = _INDEXED.match(key)
        if m and m[1] in zero_based:
            key = f"{m[1]}.{int(m[2]) + 1}{m[3] or ''}"
        out[key] = value
    return out


class CompatEC2Connection(lc_ec2.EC2Connection):
    responseCls = CompatEC2Response

    def request(self, action: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        return super().request(action, one_based(params or {}), *args, **kwargs)


class CompatEC2NodeDriver(lc_ec2.EC2NodeDriver):
    connectionCls = CompatEC2Connection
    name = "EC2-compatible"

    def __init__(self, key: str, secret: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("signature_version", "4")
        super().__init__(key, secret, **kwargs)

    def list_nodes(self, ex_node_ids: Any = None, ex_filters: Any = None) -> list[Any]:
        params: dict[str, Any] = {"Action": "DescribeInstances", "MaxResults": 1000}
        if ex_node_ids:
            params.update(self._pathlist("InstanceId", ex_node_ids))
            params.pop("MaxResults")  # AWS refuses MaxResults together with InstanceIds
        if ex_filters:
            params.update(self._build_filters(ex_filters))
        nodes: list[Any] = []
        while True:
            elem = self.connection.request(self.path, params=params).object
            for rs in findall(element=elem, xpath="reservationSet/item", namespace=lc_ec2.NAMESPACE):
                nodes += self._to_nodes(rs, "instancesSet/item")
            token = findtext(element=elem, xpath="nextToken", namespace=lc_ec2.NAMESPACE)
            if not token:
                return nodes
            params["NextToken"] = token

    def detach_volume(self, volume: Any, ex_force: bool = False) -> bool:
        vol = next(v for v in self.list_volumes() if v.id == volume.id)
        self.connection.request(self.path, params={
            "Action": "DetachVolume", "VolumeId": volume.id,
            "InstanceId": vol.extra["instance_id"]})
        return True
