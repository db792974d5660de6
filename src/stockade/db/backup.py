"""A consistent copy of the database while the server runs, and loading it back.

SQLite: the online backup API (one read transaction: the copy is the database at one instant,
WAL included). PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore``, given the connection
in a URL without its password (the password goes through ``PGPASSWORD``, never on a command line
another user could read in the process list).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from stockade.core.urls import redact_text
from stockade.db.engine import make_engine

SQLITE_FILE = "stockade.db"
PG_FILE = "stockade.pgdump"


class DatabaseCopyError(Exception):
    """Why the copy or the load failed, as a sentence without secrets."""


def kind(url: str) -> str:
    return "postgresql" if make_url(url).get_backend_name() == "postgresql" else "sqlite"


def dump(url: str, folder: Path) -> str:
    """Write a consistent copy of the database into ``folder``; the file's name."""
    if kind(url) == "sqlite":
        _sqlite_copy(_sqlite_path(url), folder / SQLITE_FILE)
        return SQLITE_FILE
    target = folder / PG_FILE
    partial = target.with_suffix(".partial")
    _pg_tool("pg_dump", url, ["--format=custom", "--no-owner", f"--file={partial}"])
    os.replace(partial, target)
    return PG_FILE


def load(url: str, file: Path) -> None:
    """Load a copy made by :func:`dump` into the (empty) database of ``url``."""
    if not is_empty(url):
        raise DatabaseCopyError(
            "the database to restore into already has tables: restore into a new, empty one"
        )
    if kind(url) == "sqlite":
        target = _sqlite_path(url)
        for suffix in ("", "-wal", "-shm", "-journal"):  # an empty database's leftovers: a
            Path(f"{target}{suffix}").unlink(missing_ok=True)  # stale WAL would be replayed
        _sqlite_copy(file, target)
        return
    _pg_tool("pg_restore", url, ["--no-owner", "--no-privileges", "--exit-on-error", str(file)])


def is_empty(url: str) -> bool:
    if kind(url) == "sqlite" and not _sqlite_path(url).exists():
        return True
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return not inspect(connection).get_table_names()
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    """The database's Alembic revision (None without one)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise DatabaseCopyError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy one SQLite database into a new file, atomically renamed into place."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, one instant
        finally:
            dst.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise DatabaseCopyError(f"copying the SQLite database {source} failed: {exc}") from None
    finally:
        src.close()
    os.replace(partial, target)


def _pg_tool(tool: str, url: str, args: list[str]) -> None:
    program = shutil.which(tool)
    if program is None:
        raise DatabaseCopyError(
            f"{tool} is not installed: install the PostgreSQL client tools (the server's major "
            "version or newer)"
        )
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    target = parsed.set(drivername="postgresql", password=None)
    dbname = target.render_as_string(hide_password=False)
    done = subprocess.run(  # noqa: S603 - a fixed tool, arguments as a list
        [program, f"--dbname={dbname}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:600]
        secrets = (str(parsed.password),) if parsed.password else ()
        raise DatabaseCopyError(f"{tool} failed: {redact_text(said, secrets)}")
