"""The console: a single page served by the API process, speaking only the public API.

It keeps the token in the tab's sessionStorage and sends it as an Authorization header, never
as a cookie, so another site cannot make the browser act on the console's behalf (no CSRF).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "frame-ancestors 'none'",
            "X-Frame-Options": "DENY", "Cache-Control": "no-cache"})
