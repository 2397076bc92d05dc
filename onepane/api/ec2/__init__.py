"""The EC2 query API front end, at /ec2/ on the API's port.

Locations are availability zones of one region (`ec2_region`, default "onepane"), so that one
DescribeInstances answers for every location, as the issue asks. Requests are signed with SigV4
using onepane access keys (`onepane keys create`); a key's role gates actions like a token's.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from ...errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OnepaneError,
    ProviderError,
    TransientProviderError,
    Unsupported,
)
from ..deps import RANK, core, header_lists
from . import (  # noqa: F401 - they register their actions
    account,
    customer_gateways,
    identity,
    image_attributes,
    instance_details,
    interfaces,
    keys_groups_snapshots,
    routing,
    vpc,
)
from .actions import ACTIONS, Context
from .sigv4 import SignatureError, SignedRequest, verify
from .wire import API_VERSION, Ec2Error, decode_params, render, render_error

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
MAX_BODY = 1024 * 1024
XML = "text/xml;charset=UTF-8"


@router.api_route("/ec2", methods=["GET", "POST"])
@router.api_route("/ec2/", methods=["GET", "POST"])
async def ec2(request: Request) -> Response:
    try:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise Ec2Error("InvalidParameterValue", "request body too large", 413)
        return await run_in_threadpool(handle, request, body)
    except Ec2Error as err:
        return Response(render_error(err), status_code=err.status, media_type=XML)
    except Exception:  # an EC2 client can only read EC2-shaped errors
        log.exception("EC2 front end: unexpected error")
        internal = Ec2Error("InternalError", "an internal error occurred; see the server log", 500)
        return Response(render_error(internal), status_code=500, media_type=XML)


def handle(request: Request, body: bytes) -> Response:
    c = core(request)
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    form = body.decode("utf-8", "replace") if request.method == "POST" else ""
    pairs = parse_qsl(raw_query, keep_blank_values=True) + parse_qsl(form, keep_blank_values=True)
    key_id, role, service = authenticate(request, raw_query, body)
    params = decode_params(pairs)
    name = params.pop("Action", None)
    if not isinstance(name, str) or not name:
        raise Ec2Error("MissingAction", "the request must contain the parameter Action")
    if service != "ec2":  # STS and IAM, for the identity questions tools ask first
        return Response(identity.answer(c, service, name, key_id), media_type=XML)
    version = params.pop("Version", API_VERSION)
    if name not in ACTIONS:
        raise Ec2Error("InvalidAction", f"the action {name} is not valid for this web service; "
                       f"onepane serves {', '.join(sorted(ACTIONS))}")
    needed, fn = ACTIONS[name]
    dry_run = str(params.pop("DryRun", "false")).lower() == "true"
    if RANK[role] < RANK[needed]:
        raise Ec2Error("UnauthorizedOperation", f"you are not authorized to perform {name}: it "
                       f"needs the {needed} role, the key has {role}", 403)
    if dry_run:  # allowed, and nothing is done (what `--dry-run` asks of every action)
        raise Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is "
                       "set.", 412)
    ctx = Context(core=c, key_id=key_id, region=c.settings.ec2_region,
                  endpoint=str(request.base_url).rstrip("/") + "/ec2/")
    try:
        result = fn(ctx, params)
    except OnepaneError as exc:
        raise translate(exc) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Ec2Error("InvalidParameterValue", f"{'.'.join(map(str, first['loc']))}: "
                       f"{first['msg']}") from exc
    log.debug("ec2 %s (version %s) by %s", name, version, key_id)
    return Response(render(name, result), media_type=XML)


def authenticate(request: Request, raw_query: str, body: bytes) -> tuple[str, str, str]:
    """The key, its role, and the service the request was signed for (ec2, or the sts and iam
    that tools such as Ansible ask at the same endpoint)."""
    c = core(request)
    if c.settings.dev and "authorization" not in request.headers:
        return "dev", "admin", "ec2"
    signed = SignedRequest(method=request.method, raw_path=request.scope.get("raw_path", b"/").decode(),
                           raw_query=raw_query, headers=header_lists(request), body=body)

    def secret_of(key_id: str) -> str | None:
        pair = c.access_keys.secret_and_role(key_id)
        return pair[0] if pair else None
    try:
        cred = verify(signed, secret_of, services=identity.SERVICES)
    except SignatureError as exc:
        raise Ec2Error(exc.code, exc.message, 401 if exc.code != "MissingParameter" else 400) from exc
    pair = c.access_keys.secret_and_role(cred.key_id)  # cached: no second query
    assert pair is not None
    return cred.key_id, pair[1], cred.service


def translate(exc: OnepaneError) -> Ec2Error:
    """onepane's errors as the EC2 codes a client's error handling looks for."""
    field = exc.field or ""
    if isinstance(exc, NotFound):
        code = {"instance": "InvalidInstanceID.NotFound", "volume": "InvalidVolume.NotFound",
                "location": "InvalidParameterValue", "key_name": "InvalidKeyPair.NotFound",
                "security_group": "InvalidGroup.NotFound", "rule": "InvalidPermission.NotFound",
                "snapshot": "InvalidSnapshot.NotFound", "network": "InvalidSubnetID.NotFound",
                "image": "InvalidAMIID.NotFound", "vpc": "InvalidVpcID.NotFound",
                "igw": "InvalidInternetGatewayID.NotFound", "rtb": "InvalidRouteTableID.NotFound",
                "dopt": "InvalidDhcpOptionID.NotFound",
                "cgw": "InvalidCustomerGatewayID.NotFound"}.get(field, "InvalidParameterValue")
        return Ec2Error(code, exc.detail)
    if isinstance(exc, Unsupported):
        return Ec2Error("UnsupportedOperation", exc.detail)
    if isinstance(exc, InvalidInput):
        code = {"image": "InvalidAMIID.NotFound", "location": "InvalidParameterValue",
                "public_key": "InvalidKey.Format", "size": "InvalidParameterValue"}.get(
            field, "InvalidParameterValue")
        return Ec2Error(code, f"{field}: {exc.detail}" if field else exc.detail)
    if isinstance(exc, Conflict):
        code = {"volume": "IncorrectState", "key_name": "InvalidKeyPair.Duplicate",
                "security_group": "InvalidGroup.Duplicate", "dependency": "DependencyViolation",
                "default": "CannotDelete", "duplicate": "InvalidPermission.Duplicate",
                "snapshot": "IncorrectState", "image": "IncorrectState"}.get(
            field, "IncorrectInstanceState")
        return Ec2Error(code, exc.detail)
    if isinstance(exc, Forbidden):
        return Ec2Error("UnauthorizedOperation", exc.detail, 403)
    if isinstance(exc, TransientProviderError):
        return Ec2Error("Unavailable", exc.detail, 503)
    if isinstance(exc, ProviderError):
        return Ec2Error("InternalError", exc.detail, 500)
    return Ec2Error("InternalError", exc.detail, 500)
