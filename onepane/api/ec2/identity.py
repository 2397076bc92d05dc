"""Who the caller is, asked of STS and IAM at the EC2 endpoint.

Tools ask before they act: Ansible's ec2_security_group calls sts:GetCallerIdentity (then
iam:GetUser) at the endpoint it was given, signing for service `sts` or `iam`. onepane answers
those two questions with its own view of the key — the account every EC2 answer names as owner
(shapes.OWNER), the access key's name as the user — and nothing else of STS or IAM.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from ...core import Core
from .shapes import OWNER
from .wire import Ec2Error

SERVICES = ("ec2", "sts", "iam")
ANSWERS = {"sts": ("GetCallerIdentity", "https://sts.amazonaws.com/doc/2011-06-15/"),
           "iam": ("GetUser", "https://iam.amazonaws.com/doc/2010-05-08/")}


def answer(core: Core, service: str, action: str, key_id: str) -> str:
    known, ns = ANSWERS[service]
    if action != known:
        raise Ec2Error("InvalidAction", f"{service}: onepane answers only {known} here")
    name = next((k["name"] for k in core.access_keys.list() if k["access_key_id"] == key_id),
                key_id)
    arn = f"arn:aws:iam::{OWNER}:user/{escape(name)}"
    if service == "sts":
        result = (f"<Arn>{arn}</Arn><UserId>{escape(key_id)}</UserId>"
                  f"<Account>{OWNER}</Account>")
    else:
        created = datetime(2026, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = (f"<User><UserId>{escape(key_id)}</UserId><Path>/</Path>"
                  f"<UserName>{escape(name)}</UserName><Arn>{arn}</Arn>"
                  f"<CreateDate>{created}</CreateDate></User>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{ns}">'
            f"<{action}Result>{result}</{action}Result>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{action}Response>")
