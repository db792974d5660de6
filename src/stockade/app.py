"""``create_app(settings)``: the ASGI application. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from stockade.container import Container
from stockade.jobs.downloads import DownloadFlusher
from stockade.jobs.queue import JobQueue
from stockade.jobs.runtime import BackgroundRuntime
from stockade.settings import Settings
from stockade.web import health, metrics
from stockade.web.api import API
from stockade.web.api import airgap as airgap_api
from stockade.web.api import audit as audit_api
from stockade.web.api import auth as auth_api
from stockade.web.api import channels as channels_api
from stockade.web.api import cve_admin as cve_admin_api
from stockade.web.api import cves as cves_api
from stockade.web.api import downloads as downloads_api
from stockade.web.api import files as files_api
from stockade.web.api import ldap as ldap_api
from stockade.web.api import members as members_api
from stockade.web.api import mirrors as mirrors_api
from stockade.web.api import policies as policies_api
from stockade.web.api import reports as reports_api
from stockade.web.api import scanning as scanning_api
from stockade.web.api import search as search_api
from stockade.web.api import signing as signing_api
from stockade.web.api import users as users_api
from stockade.web.api import webhooks as webhooks_api
from stockade.web.bodies import install_body_limit
from stockade.web.channel.auth_request import routes as authz_routes
from stockade.web.channel.responses import BlobResponder, BytesCache
from stockade.web.channel.routes import routes as conda_routes
from stockade.web.docs import install_docs
from stockade.web.errors import install_error_handlers
from stockade.web.guards import ControlCharacterGuard
from stockade.web.middleware import (
    HeadAsGetMiddleware,
    RequestContextMiddleware,
    TokenPathMiddleware,
)
from stockade.web.routing import add_routes
from stockade.web.ui import sso
from stockade.web.ui.routes import install_ui


def create_app(settings: Settings, container: Container | None = None) -> FastAPI:
    container = container or Container.build(settings)
    queue = JobQueue(container)  # requests enqueue jobs, whoever runs them
    queue.install()
    # The background runtime only with the embedded worker: a replica with it off runs no
    # background work (no loops, schedules or job threads); ``stockade worker`` processes do.
    runtime = BackgroundRuntime(container, queue) if settings.embedded_worker else None
    # The records of downloads served here are written by this process (jobs/downloads.py).
    flusher = DownloadFlusher(container)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            runtime.start()
        flusher.start()
        try:
            yield
        finally:
            flusher.stop()
            if runtime is not None:
                runtime.stop()

    app = FastAPI(
        title="Stockade",
        version="0.1.0",
        description="Secure, on-premise conda package repository",
        lifespan=lifespan,
        docs_url=None,  # stockade.web.docs serves it with no CDN
        openapi_url=f"{API}/openapi.json",
        redoc_url=None,
    )
    app.state.container = container
    app.state.jobs = queue
    app.state.blob_responder = BlobResponder(
        container.blobs, BytesCache(), settings.x_accel_redirect, redirect_s=_redirect_s(settings)
    )
    install_error_handlers(app)
    add_routes(  # webhooks and reports before channels: its /channels/{channel:path} routes catch all
        app.router,
        auth_api.router,
        users_api.router,
        audit_api.router,
        ldap_api.router,
        members_api.router,
        files_api.router,
        mirrors_api.router,
        policies_api.router,
        cves_api.router,
        cve_admin_api.router,
        scanning_api.router,
        search_api.router,
        signing_api.router,
        airgap_api.router,
        webhooks_api.router,
        reports_api.router,
        downloads_api.router,
        channels_api.router,
    )
    app.router.routes.extend(conda_routes)
    app.router.routes.extend(authz_routes)  # nginx's auth_request (docs/deployment-nginx.md)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    add_routes(
        app.router,
        health.router,  # /readyz: database, blobs, broker, migrations
        metrics.router,  # /metrics: Prometheus (admin or system:read by default)
        sso.router,
        signing_api.files_router,  # /signing/N.root.json, key_mgr.json: public
    )
    install_docs(app)
    install_ui(app)
    hsts = settings.auth.secure_cookies  # options per app instance, never on a class
    install_body_limit(app, settings.server.max_body_size)  # innermost: 413s are problems
    app.add_middleware(HeadAsGetMiddleware)  # HEAD on every GET route
    app.add_middleware(ControlCharacterGuard)
    app.add_middleware(RequestContextMiddleware, hsts=hsts)
    app.add_middleware(TokenPathMiddleware, hsts=hsts)
    return app


def _redirect_s(settings: Settings) -> int | None:
    """Seconds a presigned package URL is valid when downloads redirect to the object store."""
    s3 = settings.storage.s3
    if settings.storage.backend == "s3" and s3.downloads == "redirect":
        return s3.presign_expires_s
    return None
