"""Every error leaves the API as RFC 9457 problem+json, naming the field where there is one."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import OnepaneError

MEDIA = "application/problem+json"


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

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code,
                "detail": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, media_type=MEDIA)
