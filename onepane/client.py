"""A small typed client for the REST API, used by the CLI, the tests and the benches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from .errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OnepaneError,
    ProviderError,
    Unauthorized,
)

_BY_STATUS: dict[int, type[OnepaneError]] = {400: InvalidInput, 401: Unauthorized, 403: Forbidden,
                                             404: NotFound, 409: Conflict, 413: InvalidInput,
                                             422: InvalidInput}


class Unreachable(OnepaneError):
    exit_code = 6
    title = "onepane is unreachable"


class NotOnepane(Unreachable):
    """Something answered at the URL, but not onepane (a data plane's port, another service):
    the same exit code as no answer, with what answered."""

    title = "not onepane"


class JobFailed(OnepaneError):
    exit_code = 1
    title = "Job failed"


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                 transport=httpx.HTTPTransport(retries=3))
        self.unanswered: str | None = None

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                idempotent_key: bool = False, content: Any = None,
                headers: dict[str, str] | None = None,
                timeout: httpx.Timeout | None = None) -> Any:
        hdrs = dict(headers or {})
        if idempotent_key:
            hdrs["Idempotency-Key"] = str(uuid.uuid4())
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            r = self.http.request(method, path, json=json, params=params, content=content,
                                  headers=hdrs, **extra)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.http.base_url}: {exc}") from exc
        if r.status_code >= 400:
            raise self._error(r)
        self.unanswered = r.headers.get("Onepane-Unanswered")  # a partial listing says who
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise self._not_onepane(path, r) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, *, idempotent_key: bool = True) -> Any:
        return self.request("POST", path, json=body, idempotent_key=idempotent_key)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params or None, idempotent_key=True)

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.get(path, cursor=cursor, **params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise NotOnepane(f"{self.http.base_url} answered {path} with no list of items: "
                                 "it is not onepane's API (check --url / ONEPANE_URL)")
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def wait(self, job_id: str, timeout: float = 300.0, interval: float = 0.05) -> dict[str, Any]:
        """Poll a job until it ends; raise JobFailed with the provider's reason if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            # the server holds the request until the job ends (up to `wait` seconds)
            wait = max(0.0, min(30.0, deadline - time.monotonic()))
            job: dict[str, Any] = self.get(f"/v1/jobs/{job_id}", wait=round(wait, 1))
            if job["status"] == "succeeded":
                return job
            if job["status"] == "failed":
                detail = (job.get("error") or {}).get("detail", "unknown error")
                raise JobFailed(f"{job['kind']} {job.get('target') or ''}: {detail}", job=job_id)
            if time.monotonic() > deadline:
                raise JobFailed(f"job {job_id} still {job['status']} after {timeout:.0f}s")
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)

    def _not_onepane(self, path: str, r: httpx.Response) -> NotOnepane:
        kind = r.headers.get("content-type", "no content type").split(";")[0]
        return NotOnepane(f"{self.http.base_url} answered {path} with {kind}, not onepane's "
                          "JSON: it is not onepane's API (check --url / ONEPANE_URL)")

    @staticmethod
    def _error(r: httpx.Response) -> OnepaneError:
        try:
            body = r.json()
        except ValueError:
            body = {"detail": r.text or r.reason_phrase}
        cls = _BY_STATUS.get(r.status_code, ProviderError if r.status_code >= 500 else OnepaneError)
        err = cls(body.get("detail") or body.get("title") or str(r.status_code))
        errors = body.get("errors") or []
        if errors:
            err.field = errors[0].get("field")
        return err
