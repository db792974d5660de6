"""The application built offline (throwaway settings, no server), to read what it declares.

Test modules use it at collection time: the authorization matrix walks its route table, the
fuzz suite reads its OpenAPI document (and checks the live server serves the same one).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from stockade.app import create_app
from stockade.container import Container
from stockade.settings import load_settings


@contextmanager
def offline_app() -> Iterator[FastAPI]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/offline.db")
        container = Container.build(settings)
        try:
            yield create_app(settings, container)
        finally:
            container.close()


def flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, with FastAPI's included routers (resolved lazily since 0.16x) opened up."""
    for route in routes:
        nested = getattr(route, "effective_candidates", None)
        if callable(nested):
            yield from flat_routes(nested())
        else:
            yield route


def openapi_document() -> dict[str, Any]:
    with offline_app() as app:
        return app.openapi()
