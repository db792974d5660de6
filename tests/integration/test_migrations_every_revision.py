"""``stockade db upgrade`` from every earlier schema revision, on SQLite and PostgreSQL.

For each Alembic revision R: a database upgraded from empty to R, with a row in every table R
made (the rows of earlier revisions too: the database is built revision by revision and saved at
each one), is upgraded to the newest revision, and then the models and the migrations agree (the
drift check of ``stockade db check``) and the rows are still there.

Cheap by construction: the chain runs once per backend; at each revision the upgrade to the newest
one runs in a transaction that is rolled back (no copy of the database), and its schema is
compared with the catalog of a database migrated in one go, which the drift check compared with
the models once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from stockade.db.engine import make_engine
from stockade.db.migrate import alembic_config, check, upgrade
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database
from tests.support.templates import pg_template, sqlite_template

ROW_ID = 900_001  # far from what a migration's own rows get from a sequence
# Tables the filler leaves alone: SQLite's full-text index and its shadow tables (written by
# triggers), Alembic's own.
SKIP_PREFIXES = ("search_fts", "sqlite_", "alembic_version")
# Where a generic row breaks a rule of the schema: (table, column) -> value
OVERRIDES: dict[tuple[str, str], Any] = {
    ("policy_assignments", "channel_id"): ROW_ID,  # exactly one of channel_id, mirror_id
}


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _value(table: Table, name: str, filled: set[str], conn: Connection) -> Any:
    """A value for a column that must have one: the filled row of the table a foreign key
    names, else a plain value of the column's type."""
    column = table.c[name]
    if (table.name, name) in OVERRIDES:
        return OVERRIDES[(table.name, name)]
    for fk in column.foreign_keys:
        parent = fk.column.table.name
        if parent in filled:
            return ROW_ID
        return conn.execute(select(func.min(fk.column))).scalar()  # a migration's own row
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer | BigInteger | Numeric | Float):
        return ROW_ID if column.primary_key else 1
    if isinstance(kind, DateTime):
        return datetime(2026, 1, 1, tzinfo=UTC)
    if isinstance(kind, Date):
        return date(2026, 1, 1)
    if isinstance(kind, LargeBinary):
        return b"x"
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, String) and kind.length is not None and kind.length < 8:
        return "x"
    return f"{table.name[:20]}-{name[:20]}"[: getattr(kind, "length", None) or 64]


def _fill(conn: Connection, names: set[str], filled: set[str]) -> None:
    """One row in each table of ``names``, parents first."""
    meta = MetaData()
    meta.reflect(conn, only=sorted(n for n in names if not n.startswith(SKIP_PREFIXES)))
    for table in meta.sorted_tables:
        if table.name not in names or table.name.startswith(SKIP_PREFIXES):
            continue
        if conn.execute(select(func.count()).select_from(table)).scalar():
            filled.add(table.name)  # rows the migration made itself
            continue
        row: dict[str, Any] = {}
        for column in table.columns:
            needed = not column.nullable and column.server_default is None
            if needed or (table.name, column.name) in OVERRIDES or column.primary_key:
                row[column.name] = _value(table, column.name, filled, conn)
        if any(v is None for k, v in row.items() if not table.c[k].nullable):
            continue  # a parent without rows: nothing to point at
        conn.execute(table.insert().values(**row))
        filled.add(table.name)


def _counts(conn: Connection, names: set[str]) -> dict[str, int]:
    """Rows of each table of ``names`` that exists (one query)."""
    present = sorted(names & _reflected(conn))
    if not present:
        return {}
    query = " UNION ALL ".join(f"SELECT '{n}', count(*) FROM \"{n}\"" for n in present)
    return {str(name): int(count) for name, count in conn.execute(text(query))}


def _lost(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int | None]]:
    return {t: (n, after.get(t)) for t, n in before.items() if n and not after.get(t)}


def _reflected(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


# The schema as the database describes it, to compare two databases cheaply.
_SCHEMA = {
    "sqlite": "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
    "postgresql": """
        SELECT 'column', table_name || '.' || column_name,
               data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
          FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1, 2, 3""",
}


def _schema(backend: str, conn: Connection) -> list[tuple[Any, ...]]:
    rows = [tuple(row) for row in conn.execute(text(_SCHEMA[backend]))]
    if backend == "sqlite":  # a rebuilt table lists its columns and constraints in another order
        return [(*row[:3], _parts(row[3])) for row in rows]
    return rows


def _parts(sql: str | None) -> tuple[str, ...] | None:
    """The comma-separated parts of a CREATE statement's outer parentheses, whitespace
    normalised and sorted (the statement's head first)."""
    if sql is None:
        return None
    head, _, rest = sql.partition("(")
    rest = rest.rsplit(")", 1)[0]
    parts, depth, current = [], 0, ""
    for char in rest:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return (" ".join(head.split()), *sorted(" ".join(p.split()) for p in parts))


@pytest.mark.parametrize("backend", backends())
def test_upgrade_from_every_revision_with_data_matches_the_models(
    backend: str, tmp_path: Path
) -> None:
    revisions = _revisions()
    assert len(revisions) >= 15 and revisions[0] == "0001"
    # This process's migrated template: a database migrated from empty in one go. The drift
    # check compares it with the models once; each revision is compared with its catalog.
    head = _template(backend)
    assert check(head) is None
    engine = create_engine(head)
    with engine.connect() as conn:
        expected = _schema(backend, conn)
    engine.dispose()
    with fresh_database(backend, tmp_path, PG_URL) as plain:
        url = plain.replace("postgresql://", "postgresql+psycopg://")
        filled: set[str] = set()
        known: set[str] = set()
        for revision in revisions[:-1]:
            engine = create_engine(url)
            with engine.connect() as conn:
                before = _counts(conn, filled)
            engine.dispose()
            upgrade(url, revision)  # as `stockade db upgrade` does, one revision further
            engine = create_engine(url)
            with engine.begin() as conn:
                assert not _lost(before, _counts(conn, filled)), revision
                now = _reflected(conn)
                _fill(conn, now - known, filled)
            engine.dispose()
            known = now
            _to_head_and_back(backend, url, filled, expected)
    assert {"artifacts", "channels", "users", "subdir_indexes", "mirrors"} <= filled


def _template(backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{sqlite_template()}"
    assert PG_URL is not None
    base = PG_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    return f"{base}/{pg_template(PG_URL)}"


def _to_head_and_back(
    backend: str, url: str, filled: set[str], expected: list[tuple[Any, ...]]
) -> None:
    """Upgraded to the newest revision, the database has the schema of one migrated from empty
    (which the drift check compared with the models) and still has its rows. Done in one
    transaction that is rolled back (DDL is transactional in SQLite and PostgreSQL), so that
    the next revision starts from this one: no copy of the database is made."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            if backend == "sqlite":  # as db/migrate.py upgrades SQLite
                driver.execute("PRAGMA foreign_keys=OFF")
            with conn.begin() as outer:
                before = _counts(conn, filled)
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                assert _schema(backend, conn) == expected
                assert not _lost(before, _counts(conn, filled))
                outer.rollback()
            if backend == "sqlite":
                driver.execute("PRAGMA foreign_keys=ON")
    finally:
        engine.dispose()
