"""Alembic environment: runs against the URL given in the config (set by ``stockade db upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from stockade.db.engine import make_engine
from stockade.schema import metadata
from stockade.search.models import unmanaged


def _include(_object: object, name: str | None, _type: str, reflected: bool, _to: object) -> bool:
    """Leave out of the drift check what migrations create in raw SQL outside the models: the
    search index's FTS5 tables (SQLite) and GIN indexes (PostgreSQL), migration 0014."""
    return not (reflected and unmanaged(name))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    existing = context.config.attributes.get("connection")
    if existing is not None:
        _run(existing)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


run_migrations_online()
