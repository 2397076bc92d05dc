"""The OCCI HTTP protocol around each request (GFD.223): content negotiation, the version a
client speaks, one `Server` header, the renderings of a reply, and errors as text."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import Request, Response

from ... import __version__
from ...core import Core
from ...model import UNFINISHED, Job, JobStatus
from ..deps import core, header_lists
from . import render
from .entities import OcciError
from .parse import Parsed, parse
from .templates import TemplateCache

SERVER = f"onepane/{__version__} OCCI/1.2"
ROOT = "/occi/"
ACCEPTABLE = (render.TEXT_PLAIN, render.TEXT_OCCI_PLAIN, render.TEXT_OCCI, render.JSON,
              "application/json", render.URI_LIST)
MAX_BODY = 1 << 20  # an OCCI document is small; anything bigger is refused before parsing
USER_AGENT_OCCI = re.compile(r"OCCI/(\d+)\.(\d+)")
JOB_WAIT_S = 60.0


class Call:
    """One request: what came in (parsed lazily) and how to answer it."""

    def __init__(self, request: Request, body: bytes) -> None:
        self.request = request
        self.core: Core = core(request)
        self.body = body
        self.root = ROOT  # category locations are absolute paths below it
        self.base = str(request.base_url).rstrip("/") + ROOT  # entity URLs are absolute
        self.accept = negotiate(request.headers.get("accept", ""))
        self.cache: TemplateCache = request.app.state.occi_templates  # made by create_app
        self._parsed: Parsed | None = None

    @property
    def content_type(self) -> str:
        ctype = self.request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not ctype and not self.body.strip():
            return render.TEXT_OCCI  # everything, if anything, is in the headers
        return ctype

    def parsed(self) -> Parsed:
        if self._parsed is None:
            self._parsed = parse(self.content_type, self.body, header_lists(self.request))
        return self._parsed

    def settle(self, job: Job, timeout: float = JOB_WAIT_S) -> Job:
        """OCCI replies describe the entity as it is: wait for the job (bounded)."""
        deadline = time.monotonic() + timeout
        while job.status in UNFINISHED and time.monotonic() < deadline:
            time.sleep(0.05)
            job = self.core.ops.jobs.get_job(job.id)
        if job.status == JobStatus.failed:
            detail = (job.error or {}).get("detail") or (job.error or {}).get("message") or job.error
            raise OcciError(502, f"the provider failed: {detail or 'no reason given'}")
        return job


def check_version(request: Request) -> None:
    """GFD.223: a client names the OCCI version it speaks in User-Agent; onepane speaks 1.x."""
    m = USER_AGENT_OCCI.search(request.headers.get("user-agent", ""))
    if m and m.group(1) != "1":
        raise OcciError(501, f"OCCI/{m.group(1)}.{m.group(2)} is not supported; onepane speaks "
                        "OCCI/1.2 (and 1.1)")


def negotiate(accept: str) -> str:
    """The best of our media types for an Accept header; text/plain when anything goes."""
    if not accept.strip():
        return render.TEXT_PLAIN
    choices = []
    for n, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            choices.append((-q, n, media.lower()))
    for _, _, media in sorted(choices):
        if media in ("*/*", "text/*"):
            return render.TEXT_PLAIN
        if media == "application/*":
            return render.JSON
        if media in ACCEPTABLE:
            return render.JSON if media == "application/json" else media
    raise OcciError(406, f"none of {accept!r} can be rendered; onepane renders "
                    f"{', '.join(ACCEPTABLE)}")


def text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message.rstrip() + "\n", status_code=status, media_type="text/plain",
                    headers={"Server": SERVER, **(headers or {})})


def reply(call: Call, status: int, lines: render.Lines, json_doc: dict[str, Any] | None,
          headers: dict[str, str] | None = None) -> Response:
    """One answer in the negotiated rendering. text/occi carries everything in headers and
    `OK` in the body; text/plain has the lines in the body, and nothing for nothing."""
    headers = {"Server": SERVER, **(headers or {})}
    if call.accept == render.JSON:
        return Response(render.dumps(json_doc) if json_doc is not None else "", status, headers,
                        media_type=render.JSON)
    if call.accept == render.URI_LIST:
        urls = [v for k, v in lines if k == "X-OCCI-Location"]
        if len(urls) != len(lines):
            raise OcciError(406, "text/uri-list renders collections only")
        return Response("".join(u + "\n" for u in urls), status, headers, media_type=render.URI_LIST)
    if call.accept == render.TEXT_OCCI:
        resp = Response("OK\n", status, headers, media_type=render.TEXT_OCCI)
        for k, v in lines:
            resp.raw_headers.append((k.lower().encode(), v.encode()))
        return resp
    body = "".join(f"{k}: {v}\n" for k, v in lines)
    return Response(body, status, headers, media_type=call.accept)
