"""INSERT … ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: Any, values: dict[str, Any], keys: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=keys))


def insert_ignore_many(
    session: Session, model: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """:func:`insert_ignore` for many rows (each with the same keys): one single-row statement,
    compiled once and cached, executed for every row (the driver's ``executemany``: sqlite3's
    loop in C, psycopg's pipeline). A multi-row ``VALUES`` built for each call
    was compiled again every time with one bound parameter per value: 70% of the CPU of a mirror
    run staging 90,000 rows. Through the table, not the ORM's bulk-insert bookkeeping."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = getattr(model, "__table__", model)
    session.execute(insert(table).on_conflict_do_nothing(index_elements=keys), rows)
