"""Routers' routes put on the application as they were built, not built again.

FastAPI's ``include_router`` makes every included route a second time for the application (its
dependants, parameter and response fields, its handler): since FastAPI 0.16x on the first request
that walks the router, for all ~250 routes (~0.15 s of a start before the first answer, and the
memory of a second copy in every worker). A router here is made with its full prefix
(``APIRouter(prefix=API)``), so its routes are complete as they stand (prefix, tags, router
dependencies and ``include_in_schema`` are applied when each route is made) and are put in place
as they are. A router that includes another would make an inclusion again: refused."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import Route


def add_routes(into: APIRouter, *routers: APIRouter) -> None:
    """Append each router's routes to ``into`` (``app.router``, or a router that gathers others),
    in order: the first route that matches a request answers it."""
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute | Route):
                raise TypeError(f"{type(route).__name__} in a router given to add_routes")
        into.routes.extend(router.routes)
