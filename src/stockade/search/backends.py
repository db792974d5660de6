"""What differs between the databases: full text, substrings, prefixes and fuzzy names.

SQLite reads the FTS5 tables of migration 0014 (``search_fts``: words, porter-stemmed;
``search_fts_names``: name trigrams); PostgreSQL its weighted tsvector column and pg_trgm index.
Both give a fuzzy score with the same measure, pg_trgm's trigram similarity (:func:`similarity`),
so a typo ranks the same on either database (docs/adr/0016-search-index.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.orm import Session

from stockade.search.models import SearchDocument

FUZZY_MIN = 0.4  # trigram similarity a fuzzy name needs (pg_trgm's default threshold is 0.3)
FUZZY_NAMES = 20  # fuzzy candidates kept, best first
_FUZZY_POOL = 100  # SQLite: names read from the trigram table before they are scored
_WORD = re.compile(r"[^\W_]+")


def trigrams(value: str) -> set[str]:
    """pg_trgm's trigrams: each alphanumeric word lowercased, padded with two spaces before and
    one after."""
    grams: set[str] = set()
    for word in _WORD.findall(value.lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def similarity(a: str, b: str) -> float:
    """pg_trgm's ``similarity()``: shared trigrams over all trigrams of both."""
    return _jaccard(trigrams(a), trigrams(b))


def _jaccard(left: set[str], right: set[str]) -> float:
    if not left or not right:
        return 0.0
    shared = len(left & right)
    return shared / (len(left) + len(right) - shared)


def edits(a: str, b: str, most: int) -> int:
    """Optimal string alignment distance (insert, delete, change, swap two neighbours), counted
    up to ``most + 1``."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], before[j - 2] + 1)
        if min(row) > most:
            return most + 1
        before, previous = previous, row
    return previous[-1]


def scored(q: str, names: Iterable[str]) -> dict[str, float]:
    """The names close to ``q``, best ``FUZZY_NAMES`` first: trigram similarity at least
    ``FUZZY_MIN``, or a typo or two away (a swap of neighbours is one: trigrams miss those)."""
    wanted = trigrams(q)
    most = 0 if len(q) < 4 else 1 if len(q) < 8 else 2
    found: dict[str, float] = {}
    for name in set(names):
        score = _jaccard(wanted, trigrams(name))
        if score < FUZZY_MIN and edits(q, name, most) <= most:
            score = FUZZY_MIN
        found[name] = score
    return _best(found)


class SearchBackend(Protocol):
    def prefix(self, q: str) -> ColumnElement[bool]:
        """Names starting with ``q``, by an index."""

    def substring_ids(self, q: str) -> Select[int]:
        """Ids of documents whose name contains ``q``, by an index."""

    def text_hits(self, q: str) -> Subquery | None:
        """(id, score) of documents whose words match ``q`` (higher score: more relevant)."""

    def fuzzy(self, session: Session, q: str, channel_ids: Sequence[int]) -> dict[str, float]:
        """Names near ``q`` in these channels, with their similarity (>= FUZZY_MIN)."""


def _fts_words(q: str) -> str:
    """An FTS5 query of every word of ``q`` (each quoted: no operators from user input)."""
    return " ".join(f'"{w}"' for w in _WORD.findall(q.lower()))


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class SqliteBackend:
    def prefix(self, q: str) -> ColumnElement[bool]:
        # A range on the name index (SQLite's LIKE is case-insensitive and skips the index).
        return (SearchDocument.name >= q) & (SearchDocument.name < q + "\U0010ffff")

    def substring_ids(self, q: str) -> Select[int]:
        if len(q) < 3:  # below a trigram: a scan of the names
            return select(SearchDocument.id).where(SearchDocument.name.contains(q, autoescape=True))
        found = text("SELECT rowid AS id FROM search_fts_names WHERE search_fts_names MATCH :s")
        statement = found.bindparams(s=_quoted(q)).columns(id=Integer).subquery()
        return select(statement.c.id)

    def text_hits(self, q: str) -> Subquery | None:
        words = _fts_words(q)
        if not words:
            return None
        found = text(
            "SELECT rowid AS id, -bm25(search_fts, 10.0, 4.0, 1.0) AS score "
            "FROM search_fts WHERE search_fts MATCH :w"
        )
        return found.bindparams(w=words).columns(id=Integer, score=Float).subquery("text_hits")

    def fuzzy(self, session: Session, q: str, channel_ids: Sequence[int]) -> dict[str, float]:
        grams = sorted({q[i : i + 3] for i in range(len(q) - 2)})
        if not grams or not channel_ids:
            return {}
        pool = text(
            "SELECT d.name FROM search_fts_names f JOIN search_documents d ON d.id = f.rowid "
            "WHERE search_fts_names MATCH :m AND d.channel_id IN :ids ORDER BY f.rank LIMIT :n"
        ).bindparams(bindparam("ids", expanding=True))
        names = session.scalars(
            pool,
            {
                "m": " OR ".join(_quoted(g) for g in grams),
                "ids": list(channel_ids),
                "n": _FUZZY_POOL,
            },
        ).all()
        return scored(q, names)


class PostgresBackend:
    def prefix(self, q: str) -> ColumnElement[bool]:
        return SearchDocument.name.startswith(q, autoescape=True)  # pg_trgm's index serves LIKE

    def substring_ids(self, q: str) -> Select[int]:
        return select(SearchDocument.id).where(SearchDocument.name.contains(q, autoescape=True))

    def text_hits(self, q: str) -> Subquery | None:
        if not _WORD.search(q):
            return None
        found = text(
            "SELECT id, ts_rank_cd(search_fts_tsv, plainto_tsquery('english', :w)) AS score "
            "FROM search_documents WHERE search_fts_tsv @@ plainto_tsquery('english', :w)"
        )
        return found.bindparams(w=q).columns(id=Integer, score=Float).subquery("text_hits")

    def fuzzy(self, session: Session, q: str, channel_ids: Sequence[int]) -> dict[str, float]:
        if not channel_ids:
            return {}
        score = func.similarity(SearchDocument.name, q)
        rows = session.execute(
            select(SearchDocument.name, score)
            # by the trigram index (pg_trgm's threshold 0.3), not by walking the channels' rows
            .where(SearchDocument.name.op("%")(q), (SearchDocument.channel_id + 0).in_(channel_ids))
            .group_by(SearchDocument.name)
            .order_by(score.desc())
            .limit(FUZZY_NAMES * 3)
        )
        # the same measure as SQLite's (pg_trgm's, recomputed): one ranking on both databases
        return scored(q, (name for name, _ in rows))


def _best(scores: dict[str, float]) -> dict[str, float]:
    kept = sorted(
        ((s, n) for n, s in scores.items() if s >= FUZZY_MIN), key=lambda p: (-p[0], p[1])
    )
    return {n: s for s, n in kept[:FUZZY_NAMES]}


def backend_for(session: Session) -> SearchBackend:
    if session.get_bind().dialect.name == "postgresql":
        return PostgresBackend()
    return SqliteBackend()
