"""A module-level factory for ASGI servers that start the app themselves (several workers).

    stockade db upgrade        # once, before the workers start: they do not migrate
    uvicorn stockade.asgi:app --factory --workers 2 --loop uvloop \
        --http stockade.web.serving:HttpToolsWithDeadline

Each worker process calls :func:`app`, which reads the settings (``STOCKADE_*`` env and the TOML
file) and builds its own container, exactly as ``stockade serve`` does for its single process.
Conda ``GET``/``HEAD`` requests are dispatched before FastAPI (``CondaFastPath``). Nothing happens
at import time, and importing this module loads nothing of the application (``stockade serve
--workers N`` names it to uvicorn from a supervisor that stays small).
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from stockade.settings import Settings


def app() -> ASGIApp:
    from stockade.core.logging import configure_logging
    from stockade.core.metrics import mark_process_dead, multiprocess
    from stockade.settings import load_settings
    from stockade.web.serving import prepare_server

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    prepare_server(settings)  # private files, spools in the data folder, the header deadline
    if multiprocess():  # one of several workers (core/metrics.py): its live gauges end with it
        atexit.register(mark_process_dead)
        exit_with_supervisor()
    with importing_application(settings):
        from stockade.app import create_app
        from stockade.web.middleware import CondaFastPath

        return CondaFastPath(create_app(settings))


#: How often a worker looks for its supervisor, and how long it then has to stop gracefully.
SUPERVISOR_CHECK_S = 1.0
GRACE_S = 30.0


def exit_with_supervisor() -> None:
    """A worker of ``stockade serve --workers N`` stops when its supervisor is gone.

    uvicorn stops its workers when the supervisor is asked to stop; a supervisor killed outright
    (SIGKILL, the OOM killer) left them serving on the inherited socket, orphans nothing would
    stop, holding the port and the database. The worker then stops as on SIGTERM (requests in
    flight finish), and exits anyway after ``GRACE_S``."""
    import logging
    import os
    import signal
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(SUPERVISOR_CHECK_S)
        logging.getLogger("stockade.serve").warning(
            "the supervisor (process %s) is gone: this worker stops", parent
        )
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="stockade-supervisor-watch", daemon=True).start()


@contextmanager
def importing_application(settings: Settings) -> Iterator[None]:
    """Around the import and build of the application (``asgi.app``, ``stockade serve``).

    The cyclic garbage collector is paused meanwhile: importing the application makes ~1,500
    modules of long-lived objects and next to no garbage, and each collection pass over them is
    wasted (~0.15 s of a start). What exists then is frozen (``gc.freeze``): later collections
    of a serving process skip the application's own objects. And the client libraries this
    configuration never uses stay hidden (:func:`unused_drivers_hidden`)."""
    import gc

    gc.disable()
    try:
        with unused_drivers_hidden(settings):
            yield
    finally:
        gc.freeze()
        gc.enable()


@contextmanager
def unused_drivers_hidden(settings: Settings) -> Iterator[None]:
    """While the application is imported, hide the client libraries this configuration never
    uses from the one import that loads them all: huey's storage module imports ``redis`` and
    ``psycopg`` (with their own dependencies, ~15 MiB per process) whichever storage is used, and
    copes with their absence. Afterwards they import normally again."""
    unused = {
        "redis": settings.jobs.redis_url is None,
        "psycopg": settings.db_url.startswith("sqlite"),
    }
    from stockade.core.imports import hidden_modules

    with hidden_modules(name for name, hide in unused.items() if hide):
        yield
