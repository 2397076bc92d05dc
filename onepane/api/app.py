"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from .. import __version__, web
from ..core import Core
from . import catalog, deployments, ec2, hosts, inventory, metrics, occi, problems
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
    app.add_middleware(BodyLimits)
    problems.install(app)
    app.include_router(inventory.router, responses=problems.RESPONSES)
    app.include_router(hosts.router, responses=problems.RESPONSES)
    app.include_router(deployments.router, responses=problems.RESPONSES)
    app.include_router(catalog.router, responses=problems.RESPONSES)
    app.include_router(metrics.router, responses=problems.RESPONSES)
    app.include_router(ec2.router)
    app.include_router(occi.router)
    app.state.occi_templates = occi.TemplateCache()

    web.mount(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
