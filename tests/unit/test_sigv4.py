"""SigV4 verification against requests signed by botocore, the signer boto3 and the aws CLI use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from onepane.api.ec2.sigv4 import SignatureError, SignedRequest, verify
from onepane.api.ec2.wire import Ec2Error, decode_params, filters

KEY, SECRET = "AKOPTESTKEY000000000", "the-secret"


def signed(body: bytes = b"Action=DescribeInstances&Version=2016-11-15", secret: str = SECRET,
           path: str = "/ec2/", query: str = "") -> SignedRequest:
    url = f"http://127.0.0.1:8640{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(KEY, secret), "ec2", "onepane").add_auth(req)
    headers: dict[str, list[str]] = {"host": ["127.0.0.1:8640"]}
    for k, v in req.headers.items():
        headers.setdefault(k.lower(), []).append(v if isinstance(v, str) else v.decode())
    return SignedRequest("POST", path, query, headers, body)


def secrets(key: str) -> str | None:
    return SECRET if key == KEY else None


def test_a_botocore_signature_verifies() -> None:
    cred = verify(signed(), secrets)
    assert (cred.key_id, cred.region, cred.service) == (KEY, "onepane", "ec2")
    assert verify(signed(query="b=2&a=1&a=0"), secrets).key_id == KEY


@pytest.mark.parametrize("change, code", [
    (lambda r: SignedRequest(r.method, r.raw_path, r.raw_query, r.headers, r.body + b"&x=1"),
     "SignatureDoesNotMatch"),
    (lambda r: SignedRequest("GET", r.raw_path, r.raw_query, r.headers, r.body),
     "SignatureDoesNotMatch"),
    (lambda r: SignedRequest(r.method, "/other/", r.raw_query, r.headers, r.body),
     "SignatureDoesNotMatch"),
    (lambda r: SignedRequest(r.method, r.raw_path, r.raw_query,
                             {k: v for k, v in r.headers.items() if k != "authorization"}, r.body),
     "MissingAuthenticationToken"),
    (lambda r: SignedRequest(r.method, r.raw_path, r.raw_query,
                             {**r.headers, "authorization": ["AWS4-HMAC-SHA256 garbage"]}, r.body),
     "IncompleteSignature"),
])
def test_tampered_requests_are_rejected(change, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SignatureError) as err:
        verify(change(signed()), secrets)
    assert err.value.code == code


def test_wrong_secret_unknown_key_and_old_request() -> None:
    with pytest.raises(SignatureError, match="secret access key") as err:
        verify(signed(secret="wrong"), secrets)
    assert err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(SignatureError) as err:
        verify(signed(), lambda k: None)
    assert err.value.code == "AuthFailure"
    with pytest.raises(SignatureError) as err:
        verify(signed(), secrets, now=datetime.now(UTC) + timedelta(minutes=20))
    assert err.value.code == "RequestExpired"


def test_query_parameters_decode_into_lists_and_structures() -> None:
    p = decode_params([("InstanceId.2", "i-b"), ("InstanceId.1", "i-a"),
                       ("Filter.1.Name", "tag:app"), ("Filter.1.Value.1", "shop"),
                       ("Filter.10.Name", "availability-zone"), ("Filter.10.Value.1", "dc-a"),
                       ("Placement.AvailabilityZone", "dc-b")])
    assert p["InstanceId"] == ["i-a", "i-b"]
    assert p["Placement"] == {"AvailabilityZone": "dc-b"}
    assert filters(p) == {"tag:app": ["shop"], "availability-zone": ["dc-a"]}
    with pytest.raises(Ec2Error):
        decode_params([("A", "1"), ("A.1", "2")])
