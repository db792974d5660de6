"""Run Alembic programmatically: upgrade to head, and check that models and migrations agree.

Alembic (with Mako and Pygments, which it loads) is imported only when there is something to do:
a database already at the newest revision is recognised by comparing its ``alembic_version`` with
the ``revision``/``down_revision`` lines of the migration files, which every start of a server
does (~0.3 s of CPU saved on each).
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

_REVISION = re.compile(r"^(down_)?revision(?:\s*:[^=]+)?\s*=\s*(.+)$", re.MULTILINE)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("stockade") / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    if revision == "head" and at_head(url):
        return

    if not url.startswith("sqlite"):
        _upgrade_postgresql(url, revision)
        return
    _upgrade_sqlite(url, revision)


#: The PostgreSQL advisory lock that serialises migrations (any fixed 64-bit number of ours).
MIGRATION_LOCK = 0x5704CADE


def _upgrade_postgresql(url: str, revision: str) -> None:
    """Replicas and workers started together on a new database would each run the migrations
    (the loser died on a duplicate ``alembic_version`` table): the one migrating holds a session
    advisory lock, the others wait for it and then find the database at the revision asked."""
    from alembic import command
    from sqlalchemy import text

    from stockade.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()  # a session lock: it outlives the transaction that took it
            try:
                config = alembic_config(url)
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()
    finally:
        engine.dispose()


def _upgrade_sqlite(url: str, revision: str) -> None:
    """SQLite alters a table by rebuilding it (a copy, then the old one dropped): with foreign
    keys enforced, the drop deletes every child row declared ``ON DELETE CASCADE`` (0002 emptied
    ``api_tokens``, ``web_sessions`` and ``group_members``, 0008 ``subdir_shards``). Foreign keys
    are off while migrations run, as SQLite documents for schema changes, and checked after."""
    from alembic import command
    from sqlalchemy import text

    from stockade.core.errors import StockadeError
    from stockade.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            # outside a transaction (where the pragma is a no-op): on the driver's connection
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA foreign_keys=OFF")
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
            broken = connection.execute(text("PRAGMA foreign_key_check")).all()
            connection.rollback()
    finally:
        engine.dispose()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StockadeError(
            f"after migrating, rows of {', '.join(tables)} name rows that do not exist",
            code="db:foreign-keys",
        )


def head_revisions() -> frozenset[str] | None:
    """The newest revisions, read from the migration files (None when a file is unreadable)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (files("stockade") / "migrations" / "versions").iterdir():
        if not path.name.endswith(".py"):
            continue
        found = {bool(m[0]): m[1] for m in _REVISION.findall(path.read_text(encoding="utf-8"))}
        if False not in found:
            return None
        revisions.add(found[False].strip().strip("'\""))
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", found.get(True, "")))
    return frozenset(revisions - parents) or None


def at_head(url: str) -> bool:
    """Whether the database's ``alembic_version`` rows are exactly the newest revisions."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from stockade.db.engine import make_engine

    heads = head_revisions()
    if heads is None:
        return False
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False  # no table yet (a new database), or not reachable: Alembic says why
    finally:
        engine.dispose()
    return frozenset(row[0] for row in rows) == heads


def check(url: str) -> str | None:
    """None when the models match the migrations, else what differs."""
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    try:
        command.check(alembic_config(url))
    except AutogenerateDiffsDetected as exc:
        return str(exc)
    return None


def revision(url: str, message: str) -> None:
    from alembic import command

    command.revision(alembic_config(url), message=message, autogenerate=True)
