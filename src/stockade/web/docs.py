"""The API documentation pages, served with no request to any other host.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, a blank page on an air-gapped network.
Stockade turns it off and serves Swagger UI from the ``swagger-ui-bundle-v2`` package (Apache-2.0,
its licence ships with the package) under ``/static/swagger-ui``, and its favicon from
``/static``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from stockade.web.ui.render import STATIC_DIR

DOCS_URL = "/api/docs"
SWAGGER_ASSETS = "/static/swagger-ui"
FAVICON = "/static/favicon.svg"
# Swagger UI must not ask validator.swagger.io about the spec (another host).
SWAGGER_PARAMETERS = {"validatorUrl": None}


def install_docs(app: FastAPI) -> None:
    """``/api/docs``, its assets and ``/favicon.ico``; before the ``/static`` mount of the UI."""
    assets = StaticFiles(directory=str(swagger_ui_path))
    # ahead of every other route: the UI's `/static` mount would otherwise take these paths
    app.router.routes.insert(0, Mount(SWAGGER_ASSETS, app=assets, name="swagger-ui"))
    openapi_url = app.openapi_url or ""
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url  # FastAPI's own page: no assets

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    if oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False)
        def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")
