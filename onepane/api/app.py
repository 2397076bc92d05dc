"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from .. import __version__, web
from ..core import Core
from . import (
    addresses,
    applications,
    catalog,
    deployments,
    ec2,
    hosts,
    inventory,
    metrics,
    occi,
    problems,
)
from .bodylimits import BodyLimits


def create_app(core: Core) -> FastAPI:
    app = FastAPI(
        title="onepane",
        version=__version__,
        docs_url=None,  # served below from bundled assets: /docs works with no internet
        redoc_url=None,
        description="One API over every cloud and data center. Authenticate with "
                    "`Authorization: Bearer <token>`. Long operations return 202 and a job.",
    )
    app.state.core = core
    app.add_middleware(BodyLimits, image_limit=core.settings.max_image_bytes)
    problems.install(app)
    app.include_router(_tag_by_resource(inventory.router), responses=problems.RESPONSES)
    app.include_router(_tag_by_resource(hosts.router), responses=problems.RESPONSES)
    app.include_router(_tag_by_resource(addresses.router), responses=problems.RESPONSES)
    app.include_router(_tag_by_resource(deployments.router), responses=problems.RESPONSES)
    app.include_router(_tag_by_resource(applications.router), responses=problems.RESPONSES)
    app.include_router(_tag_by_resource(catalog.router), responses=problems.RESPONSES)
    app.include_router(_tag_by_resource(metrics.router), responses=problems.RESPONSES)
    app.include_router(ec2.router)
    app.include_router(occi.router)
    app.state.occi_templates = occi.TemplateCache()

    web.mount(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _tag_by_resource(router: APIRouter) -> APIRouter:
    """/docs groups operations by tag: each route without one is tagged with its resource
    (`/v1/instances/...` -> instances), so the 50-odd operations are not all under
    "default"."""
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.tags:
            parts = [p for p in route.path.split("/") if p and not p.startswith("{")]
            if len(parts) >= 2 and parts[0] == "v1":
                route.tags = [parts[1]]
    return router
