"""Every place the database names a blob, as one sorted stream (``stockade fsck``).

The tables are named here with SQLAlchemy's lightweight ``table()``/``column()`` constructs, not
imported from the domains that own them: ``storage`` sits below every domain (import-linter's
layers). A test walks every ``*sha256`` column of the models and fails when one is neither
declared here nor listed as not naming a blob (``tests/integration/test_fsck.py``).

Each reference is a row ``(sha256, kind, where, size, state)``: ``where`` says what names the
blob (``channel/subdir/filename``), ``size`` is the size the database expects (package files
only), ``state`` the artifact's scan status (a passive mirror's record has no bytes yet).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    column,
    func,
    literal,
    null,
    select,
    table,
    union_all,
)
from sqlalchemy.orm import Session, sessionmaker

from stockade.db.base import JSONType

# Artifact states whose bytes are legitimately absent: a passive mirror's record not fetched yet,
# a mirror run's staged row (channels/scanstate.py ScanStatus).
ABSENT_STATES = frozenset({"unfetched", "staged"})


@dataclass(frozen=True, order=True)
class Reference:
    sha256: str
    kind: str
    where: str
    size: int | None = None
    state: str | None = None

    @property
    def optional(self) -> bool:
        """Whether the blob may be absent without anything being lost."""
        return self.kind == "package" and self.state in ABSENT_STATES


_S = String
_channels = table(
    "channels",
    column("id"),
    column("name", _S),
    column("channeldata_sha256", _S),
    column("notices_sha256", _S),
)
_artifacts = table(
    "artifacts",
    column("channel_id"),
    column("subdir", _S),
    column("filename", _S),
    column("sha256", _S),
    column("size", BigInteger),
    column("scan_status", _S),
)
_INDEX_FILES = {
    "repodata_sha256": "repodata.json",
    "repodata_zst_sha256": "repodata.json.zst",
    "repodata_bz2_sha256": "repodata.json.bz2",
    "shard_index_sha256": "repodata_shards.msgpack.zst",
    "run_exports_sha256": "run_exports.json",
}
_indexes = table(
    "subdir_indexes",
    column("id"),
    column("channel_id"),
    column("subdir", _S),
    *(column(name, _S) for name in _INDEX_FILES),
)
_shards = table(
    "subdir_shards", column("subdir_index_id"), column("name", _S), column("shard_sha256", _S)
)
_mirrors = table("mirrors", column("id"), column("name", _S))
_mirror_states = table(
    "mirror_subdir_states",
    column("mirror_id"),
    column("subdir", _S),
    column("raw_sha256", _S),
    column("exclusions_sha256", _S),
)
_exports = table(
    "airgap_exports",
    column("bundle_id", _S),
    column("manifest_sha256", _S),
    column("covered_sha256", _S),
    column("counts", JSONType),
)

#: every column naming a blob, as ``table.column`` (the completeness test reads it)
COLUMNS = frozenset(
    {
        "artifacts.sha256",
        "channels.channeldata_sha256",
        "channels.notices_sha256",
        *(f"subdir_indexes.{name}" for name in _INDEX_FILES),
        "subdir_shards.shard_sha256",
        "mirror_subdir_states.raw_sha256",
        "mirror_subdir_states.exclusions_sha256",
        "airgap_exports.manifest_sha256",
        "airgap_exports.covered_sha256",
    }
)
#: ``*sha256`` columns that hold a hash but name no blob, and why
NOT_BLOBS = {
    "blobs.sha256": "the inventory of package blobs, written with their artifact (not a reference)",
    "package_contents.sha256": "what a package's info/ says, keyed by its sha256 (metadata)",
    "artifact_scans.sha256": "a scan verdict, keyed by the file it judged",
    "vuln_feeds.content_sha256": "the last fetched feed file, to skip an unchanged one",
    "download_events.sha256": "which file a download served (kept after the file is gone)",
    "airgap_imports.file_sha256": "a bundle file in the air-gap folder, not in the blob store",
}


def _row(
    sha: ColumnElement[Any],
    kind: str,
    where: ColumnElement[Any],
    size: ColumnElement[Any] | None = None,
    state: ColumnElement[Any] | None = None,
) -> list[ColumnElement[Any]]:
    return [
        sha.label("sha256"),
        literal(kind, _S).label("kind"),
        where.label("where_"),
        (size if size is not None else cast(null(), BigInteger)).label("size"),
        (state if state is not None else cast(null(), _S)).label("state"),
    ]


Filter = Callable[[ColumnElement[Any]], ColumnElement[bool]]


def _not_null(sha: ColumnElement[Any]) -> ColumnElement[bool]:
    return sha.is_not(None)


def _selects(keep: Filter = _not_null) -> list[Select[Any]]:
    """One SELECT per referencing column, of the rows whose sha256 ``keep`` keeps."""
    a, c, i, s = _artifacts.c, _channels.c, _indexes.c, _shards.c
    m, ms, x = _mirrors.c, _mirror_states.c, _exports.c
    found: list[tuple[ColumnElement[Any], Select[Any]]] = []

    def add(sha: ColumnElement[Any], query: Select[Any]) -> None:
        found.append((sha, query))

    package = c.name + "/" + a.subdir + "/" + a.filename
    add(
        a.sha256,
        select(*_row(a.sha256, "package", package, a.size, a.scan_status)).join_from(
            _artifacts, _channels, a.channel_id == c.id
        ),
    )
    for name, filename in _INDEX_FILES.items():
        where = c.name + "/" + i.subdir + "/" + filename
        add(
            i[name],
            select(*_row(i[name], "index", where)).join_from(
                _indexes, _channels, i.channel_id == c.id
            ),
        )
    shard = c.name + "/" + i.subdir + "/shards/" + s.name
    add(
        s.shard_sha256,
        select(*_row(s.shard_sha256, "shard", shard))
        .join_from(_shards, _indexes, s.subdir_index_id == i.id)
        .join(_channels, i.channel_id == c.id),
    )
    for name, filename in (
        ("channeldata_sha256", "channeldata.json"),
        ("notices_sha256", "notices.json"),
    ):
        add(c[name], select(*_row(c[name], "channel", c.name + "/" + filename)))
    for name, what in (("raw_sha256", " upstream repodata"), ("exclusions_sha256", " exclusions")):
        where = "mirror " + m.name + "/" + ms.subdir + what
        add(
            ms[name],
            select(*_row(ms[name], "mirror", where)).join_from(
                _mirror_states, _mirrors, ms.mirror_id == m.id
            ),
        )
    for name, what in (("manifest_sha256", " manifest"), ("covered_sha256", " covered files")):
        add(x[name], select(*_row(x[name], "airgap", "airgap export " + x.bundle_id + what)))
    return [q.where(keep(sha)) for sha, q in found]


def _exported_files(session: Session, only: Collection[str] | None) -> list[Reference]:
    """The repodata and signing files an air-gap export's manifest lists (kept in its
    ``counts``: ``airgap/exports.py``), which its bundle is written from."""
    found: list[Reference] = []
    for bundle_id, counts in session.execute(select(_exports.c.bundle_id, _exports.c.counts)):
        for part in ("repodata", "signing"):
            files = (counts or {}).get(part) or {}
            for path, sha in files.items():
                if isinstance(sha, str) and (only is None or sha in only):
                    found.append(Reference(sha, "airgap", f"airgap export {bundle_id} {path}"))
    found.sort()
    return found


def pages(
    factory: sessionmaker[Session], *, size: int = 5000
) -> Iterator[list[tuple[str, list[Reference]]]]:
    """Every referenced sha256 with what references it, ascending, ``size`` sha256s a page.

    Each page is read in a transaction of its own (keyset pagination on the sha256): a check
    that takes hours (``fsck --verify``) holds no snapshot open meanwhile (SQLite could not
    checkpoint its WAL, PostgreSQL could not vacuum)."""
    with factory() as session:
        exported = _exported_files(session, None)  # a few per air-gap export
    after = ""
    while True:
        with factory() as session:
            shas = _distinct(session, after, size)
            last = shas[-1] if len(shas) == size else None  # None: nothing after this page
            extra = {r.sha256 for r in exported if _within(r.sha256, after, last)}
            wanted = sorted(set(shas) | extra)
            if not wanted:
                return
            found = _in_range(session, wanted[0], wanted[-1], exported)
        yield [(sha, found[sha]) for sha in wanted if sha in found]
        if last is None:
            return
        after = wanted[-1]


def _within(sha: str, after: str, last: str | None) -> bool:
    return sha > after and (last is None or sha <= last)


def _key(session: Session, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` in byte order, as Python compares strings (PostgreSQL: the "C" collation)."""
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


def _distinct(session: Session, after: str, size: int) -> list[str]:
    query = union_all(*_selects()).subquery()
    key = _key(session, query.c.sha256)
    rows = session.scalars(
        select(query.c.sha256).where(key > after).group_by(query.c.sha256).order_by(key).limit(size)
    )
    return list(rows)


def _in_range(
    session: Session, low: str, high: str, exported: list[Reference]
) -> dict[str, list[Reference]]:
    """Every reference to a sha256 from ``low`` to ``high``."""

    def keep(sha: ColumnElement[Any]) -> ColumnElement[bool]:
        key = _key(session, sha)
        return and_(key >= low, key <= high)

    found: dict[str, list[Reference]] = {}
    for row in session.execute(union_all(*_selects(keep))):
        found.setdefault(row[0], []).append(Reference(*row))
    for ref in exported:
        if low <= ref.sha256 <= high:
            found.setdefault(ref.sha256, []).append(ref)
    return found


def count_references(session: Session) -> int:
    """How many rows name a blob (a progress bar's total; air-gap export files aside)."""
    query = union_all(*_selects()).subquery()
    return session.scalar(select(func.count()).select_from(query)) or 0


def referrers(session: Session, shas: Collection[str]) -> dict[str, list[Reference]]:
    """What references each of ``shas`` (a few hundred at a time: one IN list per column)."""
    wanted = frozenset(shas)
    found: dict[str, list[Reference]] = {}
    for row in session.execute(union_all(*_selects(lambda sha: sha.in_(wanted)))):
        found.setdefault(row[0], []).append(Reference(*row))
    for ref in _exported_files(session, wanted):
        found.setdefault(ref.sha256, []).append(ref)
    return found
