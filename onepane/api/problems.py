"""Every error leaves the API as RFC 9457 problem+json, naming the field where there is one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

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
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
                  for e in exc.errors()]
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

    @app.middleware("http")
    async def no_nul(request: Request, call_next: Any) -> Any:
        """A NUL character in the path or the query is refused the same way on every store."""
        raw = request.scope.get("query_string", b"") + request.scope.get("raw_path", b"")
        if b"%00" in raw or b"\x00" in raw or "\x00" in request.url.path:
            body = {"type": "https://onepane.dev/problems/InvalidInput", "title": "Invalid input",
                    "status": 422, "detail": "the URL must not contain NUL characters"}
            return JSONResponse(body, status_code=422, media_type=MEDIA)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code,
                "detail": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, media_type=MEDIA)
