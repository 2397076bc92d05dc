"""The console: a single page served by the API process, speaking only the public API.

It keeps the token in the tab's sessionStorage and sends it as an Authorization header, never
as a cookie, so another site cannot make the browser act on the console's behalf (no CSRF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from .openapi30 import as_30

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI from the swagger-ui-bundle package: no request leaves the machine. It
        draws the 3.0 copy of the document (openapi30.py), resources collapsed and the model
        list left out: 2.3 s to a drawn page before, 0.6-0.8 s cold after (issue 31)."""
        return get_swagger_ui_html(openapi_url="/docs/openapi30.json", title="onepane API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg",
                                   swagger_ui_parameters={"docExpansion": "none",
                                                          "defaultModelsExpandDepth": -1,
                                                          "filter": True})

    @app.get("/docs/openapi30.json", include_in_schema=False)
    def openapi30() -> dict[str, Any]:
        """What /docs draws: /openapi.json in 3.0's words (openapi30.py says why)."""
        return as_30(app.openapi())

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "frame-ancestors 'none'",
            "X-Frame-Options": "DENY", "Cache-Control": "no-cache"})
