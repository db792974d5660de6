"""Migrated template databases: migrate once per test process, then clone per test.

A fresh database that runs every migration costs a second or more on PostgreSQL; tests that only
need the current schema clone a template instead (``CREATE DATABASE … TEMPLATE``, or a copy of a
migrated SQLite file), which is several times faster. Migration tests keep using empty databases.
Each test process (pytest-xdist worker) has its own template, named after the run's database, and
drops it when it exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from stockade.db.migrate import upgrade

_lock = threading.Lock()
_sqlite: Path | None = None
_pg: dict[str, str] = {}  # server URL -> template database name


def sqlite_template() -> Path:
    global _sqlite  # noqa: PLW0603 - one template per process
    with _lock:
        if _sqlite is None:
            folder = Path(tempfile.mkdtemp(prefix="stockade-tpl-"))
            path = folder / "template.db"
            upgrade(f"sqlite:///{path}")
            atexit.register(shutil.rmtree, folder, True)
            _sqlite = path
        return _sqlite


def clone_sqlite(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template(), target)


def pg_template(pg_url: str) -> str:
    """The name of this process's migrated template on the server of ``pg_url``."""
    base = pg_url.rsplit("/", 1)[0]
    with _lock:
        name = _pg.get(base)
        if name is not None:
            return name
        run = pg_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0][:40]
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        name = f"{run}_tpl_{worker}_{uuid.uuid4().hex[:6]}"[:63]
        admin = _admin(pg_url)
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        upgrade(f"{base}/{name}")
        atexit.register(_drop, pg_url, name)
        _pg[base] = name
        return name


def _admin(pg_url: str) -> Engine:
    return create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )


def _drop(pg_url: str, name: str) -> None:
    admin = _admin(pg_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception:  # at exit, a leftover template is not worth a traceback
        pass
    finally:
        admin.dispose()
