"""vulnerability alias groups: records that alias each other are one vulnerability (issue 12)

Adds each record's merged view (``alias_group``, ``group_score``, ``group_severity``,
``score_source``) and the ``vuln_alias_ids`` index, computes the groups of the records stored,
and recounts the per-artifact summaries of artifacts that a group matches more than once.
Self-contained (no application models): later migrations may change those.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:30:00
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_OPEN = ("reported", "active")
_STATUS_ORDER = ("cleared", "mitigated", "disputed", "reported", "active")


def upgrade() -> None:
    with op.batch_alter_table("vulnerabilities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("alias_group", sa.String(length=128), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("group_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("group_severity", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("score_source", sa.String(length=128), nullable=True))
        batch_op.create_index("ix_vulnerabilities_alias_group", ["alias_group"], unique=False)
        batch_op.create_index(
            "ix_vulnerabilities_group_severity", ["group_severity", "group_score"], unique=False
        )
    if op.get_bind().dialect.name != "sqlite":
        # (on SQLite, dropping a default rebuilds the table, and dropping the old table with
        # foreign keys on would cascade to every match, target and curation: the default stays)
        op.alter_column("vulnerabilities", "alias_group", server_default=None)
    op.create_table(
        "vuln_alias_ids",
        sa.Column("vulnerability_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["vulnerability_id"],
            ["vulnerabilities.id"],
            name=op.f("fk_vuln_alias_ids_vulnerability_id_vulnerabilities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vulnerability_id", "alias", name=op.f("pk_vuln_alias_ids")),
    )
    with op.batch_alter_table("vuln_alias_ids", schema=None) as batch_op:
        batch_op.create_index("ix_vuln_alias_ids_alias", ["alias"], unique=False)
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table("vuln_alias_ids", schema=None) as batch_op:
        batch_op.drop_index("ix_vuln_alias_ids_alias")
    op.drop_table("vuln_alias_ids")
    with op.batch_alter_table("vulnerabilities", schema=None) as batch_op:
        batch_op.drop_index("ix_vulnerabilities_group_severity")
        batch_op.drop_index("ix_vulnerabilities_alias_group")
        batch_op.drop_column("score_source")
        batch_op.drop_column("group_severity")
        batch_op.drop_column("group_score")
        batch_op.drop_column("alias_group")


# ------------------------------------------------------------------------------------ backfill

_vulns = sa.table(
    "vulnerabilities",
    sa.column("id", sa.Integer),
    sa.column("vuln_id", sa.String),
    sa.column("aliases", _JSON),
    sa.column("best_score", sa.Float),
    sa.column("withdrawn", sa.DateTime),
    sa.column("alias_group", sa.String),
    sa.column("group_score", sa.Float),
    sa.column("group_severity", sa.String),
    sa.column("score_source", sa.String),
)
_alias_ids = sa.table(
    "vuln_alias_ids", sa.column("vulnerability_id", sa.Integer), sa.column("alias", sa.String)
)
_matches = sa.table(
    "vuln_matches",
    sa.column("vulnerability_id", sa.Integer),
    sa.column("artifact_id", sa.Integer),
    sa.column("status", sa.String),
)
_summaries = sa.table(
    "artifact_vuln_summaries",
    sa.column("artifact_id", sa.Integer),
    sa.column("max_score", sa.Float),
    sa.column("severity", sa.String),
    sa.column("worst_status", sa.String),
    sa.column("counts", _JSON),
)
_state = sa.table("vuln_state", sa.column("id", sa.Integer), sa.column("revision", sa.BigInteger))


def _band(score: float) -> str:
    tenths = round(score * 10)
    if tenths == 0:
        return "none"
    if tenths < 40:
        return "low"
    if tenths < 70:
        return "medium"
    return "high" if tenths < 90 else "critical"


def _ids(vuln_id: str, aliases: Any) -> set[str]:
    found = {vuln_id.strip().upper()}
    for alias in aliases if isinstance(aliases, list) else []:
        if isinstance(alias, str) and alias.strip():
            found.add(alias.strip().upper())
    return {i for i in found if len(i) <= 128}


def _groups(rows: Sequence[Any]) -> dict[int, list[Any]]:
    parent = {r.id: r.id for r in rows}

    def root(row_id: int) -> int:
        while parent[row_id] != row_id:
            parent[row_id] = parent[parent[row_id]]
            row_id = parent[row_id]
        return row_id

    owner: dict[str, int] = {}
    for row in rows:
        if row.withdrawn is None:
            for alias in _ids(row.vuln_id, row.aliases):
                parent[root(row.id)] = root(owner.setdefault(alias, row.id))
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[root(row.id)].append(row)
    return groups


def _cve(vuln_id: str) -> bool:
    return vuln_id.upper().startswith("CVE-")


def _figures(group: list[Any]) -> dict[str, Any]:
    cve = _cve
    primary = min(group, key=lambda r: (cve(r.vuln_id), r.vuln_id))
    scored = [r for r in group if r.best_score is not None]
    out: dict[str, Any] = {"alias_group": primary.vuln_id, "group_score": None}
    out.update(group_severity=None, score_source=None)
    if scored:
        best = min(scored, key=lambda r: (-r.best_score, not cve(r.vuln_id), r.vuln_id))
        out.update(group_score=best.best_score, score_source=best.vuln_id)
        out["group_severity"] = _band(best.best_score)
    return out


def _backfill() -> None:
    bind = op.get_bind()
    columns = (_vulns.c.id, _vulns.c.vuln_id, _vulns.c.aliases)
    rows = bind.execute(sa.select(*columns, _vulns.c.best_score, _vulns.c.withdrawn)).all()
    if not rows:
        return
    alias_rows = [
        {"vulnerability_id": r.id, "alias": a}
        for r in rows
        if r.withdrawn is None
        for a in sorted(_ids(r.vuln_id, r.aliases))
    ]
    for start in range(0, len(alias_rows), 5000):
        bind.execute(sa.insert(_alias_ids), alias_rows[start : start + 5000])
    shared: dict[int, tuple[str, float | None]] = {}
    update = (
        sa.update(_vulns)
        .where(_vulns.c.id == sa.bindparam("row_id"))
        .values(
            alias_group=sa.bindparam("alias_group"),
            group_score=sa.bindparam("group_score"),
            group_severity=sa.bindparam("group_severity"),
            score_source=sa.bindparam("score_source"),
        )
    )
    values: list[dict[str, Any]] = []
    for group in _groups(rows).values():
        figures = _figures(group)
        for row in group:
            values.append({"row_id": row.id, **figures})
            if len(group) > 1:
                shared[row.id] = (figures["alias_group"], figures["group_score"])
    for start in range(0, len(values), 1000):
        bind.execute(update, values[start : start + 1000])
    _recount(bind, shared)
    bind.execute(sa.update(_state).values(revision=_state.c.revision + 1))


def _recount(bind: Any, shared: dict[int, tuple[str, float | None]]) -> None:
    """Summaries of artifacts matched by a group of several records: each group counts once."""
    if not shared:
        return
    ids = sorted(shared)
    artifacts: set[int] = set()
    for start in range(0, len(ids), 500):
        query = sa.select(_matches.c.artifact_id).where(
            _matches.c.vulnerability_id.in_(ids[start : start + 500])
        )
        artifacts.update(bind.execute(query).scalars())
    ordered = sorted(artifacts)
    for start in range(0, len(ordered), 500):
        part = ordered[start : start + 500]
        query = (
            sa.select(_matches.c.artifact_id, _matches.c.status, _vulns.c.alias_group)
            .add_columns(_vulns.c.group_score)
            .join(_vulns, _vulns.c.id == _matches.c.vulnerability_id)
            .where(_matches.c.artifact_id.in_(part))
        )
        per: dict[int, dict[str, tuple[str, float | None]]] = defaultdict(dict)
        for artifact_id, status, group, score in bind.execute(query):
            seen = per[artifact_id].get(group)
            if seen is None or _rank(status) > _rank(seen[0]):
                per[artifact_id][group] = (status, score)
        for artifact_id, groups in per.items():
            bind.execute(
                sa.update(_summaries)
                .where(_summaries.c.artifact_id == artifact_id)
                .values(**_summary(list(groups.values())))
            )


def _rank(status: str) -> int:
    return _STATUS_ORDER.index(status) if status in _STATUS_ORDER else -1


def _summary(matches: list[tuple[str, float | None]]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for status, _ in matches:
        counts[status] += 1
    scores = [s for status, s in matches if status in _OPEN and s is not None]
    best = max(scores) if scores else None
    return {
        "max_score": best,
        "severity": _band(best) if best is not None else None,
        "worst_status": max(counts, key=_rank),
        "counts": dict(counts),
    }
