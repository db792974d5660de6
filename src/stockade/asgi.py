"""A module-level factory for ASGI servers that start the app themselves (several workers).

    stockade db upgrade        # once, before the workers start: they do not migrate
    uvicorn stockade.asgi:app --factory --workers 2 --loop uvloop \
        --http stockade.web.serving:HttpToolsWithDeadline

Each worker process calls :func:`app`, which reads the settings (``STOCKADE_*`` env and the TOML
file) and builds its own container, exactly as ``stockade serve`` does for its single process.
Conda ``GET``/``HEAD`` requests are dispatched before FastAPI (``CondaFastPath``). Nothing happens
at import time.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from stockade.app import create_app
from stockade.core.logging import configure_logging
from stockade.settings import load_settings
from stockade.web.middleware import CondaFastPath
from stockade.web.serving import prepare_server


def app() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    prepare_server(settings)  # private files, spools in the data folder, the header deadline
    return CondaFastPath(create_app(settings))
