"""Every error leaves the API as RFC 9457 problem+json, naming the field where there is one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import OnepaneError

MEDIA = "application/problem+json"

_PROBLEM = {"content": {MEDIA: {"schema": {"type": "object", "properties": {
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
    "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}}}}
# What every route may answer besides its success: documented once, for every route, so that
# clients (and schemathesis' conformance checks) know them.
RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"description": why, **_PROBLEM} for code, why in {
        400: "malformed request", 401: "no or unknown token", 403: "the token's role may not",
        404: "no such resource", 409: "conflicts with the resource's state",
        413: "upload too large", 422: "invalid input, naming the field",
        502: "the provider refused the operation (its reason in detail)",
        503: "a location or the store is not answering; retry later"}.items()}


def install(app: FastAPI) -> None:
    @app.exception_handler(OnepaneError)
    async def onepane_error(_: Request, exc: OnepaneError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.problem(), status_code=exc.status, media_type=MEDIA,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        body = {"type": "https://onepane.dev/problems/InvalidInput", "title": "Invalid input",
                "status": 422, "detail": detail, "errors": errors}
        return JSONResponse(body, status_code=422, media_type=MEDIA)

    @app.exception_handler(DataError)
    async def bad_data(_: Request, exc: DataError) -> JSONResponse:
        """The store refused a value (PostgreSQL: a NUL character in text, a number out of
        range): the request's fault, and the transaction was rolled back whole."""
        reason = "text must not contain NUL characters" if "NUL" in str(exc.orig) \
            else "a value the store cannot hold"
        body = {"type": "https://onepane.dev/problems/InvalidInput", "title": "Invalid input",
                "status": 422, "detail": reason}
        return JSONResponse(body, status_code=422, media_type=MEDIA)

    app.add_middleware(NoNul)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code,
                "detail": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, media_type=MEDIA)


class NoNul:
    """A NUL character in the path or the query is refused the same way on every store. A
    plain ASGI middleware: Starlette's @app.middleware("http") wraps every request in a task
    group and a streamed body, which cost more CPU than the check itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("query_string", b"") + scope.get("raw_path", b"")
            if b"%00" in raw or b"\x00" in raw or "\x00" in scope.get("path", ""):
                body = {"type": "https://onepane.dev/problems/InvalidInput",
                        "title": "Invalid input", "status": 422,
                        "detail": "the URL must not contain NUL characters"}
                await JSONResponse(body, status_code=422, media_type=MEDIA)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """The field as the caller wrote it: `role`, not FastAPI's `body.role` or `query.state`
    (where a value came from is the framework's business; the name is the caller's)."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)
