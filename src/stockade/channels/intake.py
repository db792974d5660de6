"""The one door in: every artifact enters a channel here (upload, copy, mirror, air-gap import).

In the caller's transaction, :func:`admit` and :func:`admit_rows` insert the rows with their scan
state and servability (:mod:`stockade.channels.scanstate`), write a :class:`ScanRequest` intent row
for each artifact whose bytes are here (so a crash never loses a scan: the row is there or the
artifact is not) and a :class:`MatchRequest` for each new artifact (its vulnerability matching,
``vulns.match_requests``), and ask for the publication of the touched subdirs. What is not
servable yet is left out of that publication and published when its verdict makes it servable.

A passive mirror's records enter as ``unfetched``: listed, no bytes; :func:`admit_fetched` moves
one to ``pending`` (with its request) when its file is first fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact, Channel, MatchRequest, ScanRequest
from stockade.channels.publishing import request_publications
from stockade.channels.scanstate import ArtifactSource, ScanStatus, is_servable
from stockade.core.clock import utcnow
from stockade.db.base import UTCDateTime
from stockade.db.unit_of_work import changed
from stockade.db.upsert import insert_ignore_many


class ScanReason(StrEnum):
    UPLOAD = "upload"
    COPY = "copy"
    MIRROR = "mirror"
    PASSIVE_FETCH = "passive-fetch"
    IMPORT = "import"
    MANUAL = "manual"
    RULES_CHANGED = "rules-changed"
    UNSCANNED = "unscanned"  # found by the housekeeper without a verdict or a request


_CHUNK = 500


def admit(
    session: Session,
    artifact: Artifact,
    channel: Channel,
    *,
    reason: ScanReason,
    request: bool = True,
) -> Artifact:
    """Add one artifact (its bytes are stored) as ``pending``, with its scan request."""
    if request:  # the subdir row first, then the file (channels/lockorder.py)
        request_publications(session, [(channel.id, artifact.subdir)])
    artifact.channel_id = channel.id
    artifact.scan_status = ScanStatus.PENDING
    artifact.servable = is_servable(ScanStatus.PENDING, channel, artifact.source)
    session.add(artifact)
    session.flush()
    queue_scans(session, [artifact.id], reason)
    queue_matches(session, [artifact.id])
    return artifact


def admit_many(
    session: Session, artifacts: Sequence[Artifact], channel: Channel, *, reason: ScanReason
) -> None:
    """:func:`admit` for a batch (one flush, one insert of scan requests); the caller has asked
    for the publication of their subdirs (it locks those rows first)."""
    for artifact in artifacts:
        artifact.channel_id = channel.id
        artifact.scan_status = ScanStatus.PENDING
        artifact.servable = is_servable(ScanStatus.PENDING, channel, artifact.source)
    session.add_all(artifacts)
    session.flush()
    queue_scans(session, [a.id for a in artifacts], reason)
    queue_matches(session, [a.id for a in artifacts])


def admit_rows(
    session: Session,
    channel: Channel,
    rows: Sequence[dict[str, Any]],
    *,
    stored: bool,
    reason: ScanReason,
) -> list[int]:
    """Bulk-insert artifact rows (a mirror run). ``stored``: their bytes are here (active mode)
    and each is queued for its scan; otherwise they enter ``unfetched`` (passive mode)."""
    status = ScanStatus.PENDING if stored else ScanStatus.UNFETCHED
    # the subdir rows first, then the files (channels/lockorder.py)
    request_publications(session, {(channel.id, r["subdir"]) for r in rows})
    ids: list[int] = []
    for start in range(0, len(rows), _CHUNK):
        chunk = [
            {
                **row,
                "scan_status": status,
                "servable": is_servable(
                    status, channel, row.get("source") or ArtifactSource.MIRROR
                ),
            }
            for row in rows[start : start + _CHUNK]
        ]
        session.execute(insert(Artifact), chunk)
        keys = [(r["subdir"], r["filename"]) for r in chunk]
        ids.extend(_ids(session, channel.id, keys))
    if stored:
        queue_scans(session, ids, reason)
    queue_matches(session, ids)
    return ids


def stage_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert a batch of a mirror run's new rows as ``staged``: not servable, listed nowhere,
    until :func:`admit_staged` admits all of them in the run's last transaction. A file that
    entered the channel since the run planned (an upload) keeps its place: its row is skipped,
    as a conflict found when planning is."""
    staged = [{**row, "scan_status": ScanStatus.STAGED, "servable": False} for row in rows]
    insert_ignore_many(session, Artifact, staged, ["channel_id", "subdir", "filename"])


def admit_staged(
    session: Session, channel: Channel, mirror_id: int, *, stored: bool, reason: ScanReason
) -> set[str]:
    """Admit every row a run of ``mirror_id`` staged, in one statement (passive: ``unfetched``;
    active: ``pending`` with their scan requests); returns the subdirs touched."""
    where = (
        Artifact.channel_id == channel.id,
        Artifact.mirror_id == mirror_id,
        Artifact.scan_status == ScanStatus.STAGED,
    )
    # Not SELECT DISTINCT subdir: SQLite would walk every row of the channel by an index that
    # starts with (channel_id, subdir); this reads the staged rows only.
    staged = session.execute(select(Artifact.id, Artifact.subdir).where(*where)).all()
    if not staged:
        return set()
    subdirs = {subdir for _, subdir in staged}
    ids = [aid for aid, _ in staged] if stored else []
    status = ScanStatus.PENDING if stored else ScanStatus.UNFETCHED
    # new rows (none has a request yet): their match requests in one statement, as they are
    requested = literal(utcnow(), UTCDateTime())
    session.execute(
        insert(MatchRequest).from_select(
            ["artifact_id", "requested_at"], select(Artifact.id, requested).where(*where)
        )
    )
    session.execute(
        update(Artifact)
        .where(*where)
        .values(scan_status=status, servable=is_servable(status, channel, ArtifactSource.MIRROR))
        .execution_options(synchronize_session=False)
    )
    if ids:
        queue_scans(session, ids, reason)
    request_publications(session, {(channel.id, sd) for sd in subdirs})
    return subdirs


def readmit(session: Session, artifact_id: int, *, stored: bool, reason: ScanReason) -> None:
    """A mirrored record whose file changed: its old verdict says nothing about the new bytes."""
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        return
    channel = session.get(Channel, artifact.channel_id)
    status = ScanStatus.PENDING if stored else ScanStatus.UNFETCHED
    artifact.scan_status = status
    artifact.servable = channel is not None and is_servable(status, channel, artifact.source)
    if stored:
        queue_scans(session, [artifact_id], reason)


def admit_fetched(session: Session, artifact_id: int) -> bool:
    """A passive record's file was fetched: it is ``pending`` until its verdict (True if moved).

    It stays listed (servable) meanwhile; its downloads wait for the verdict
    (:mod:`stockade.scanning.gate`), and a bad verdict takes it out of the index."""
    moved = session.execute(
        update(Artifact)
        .where(Artifact.id == artifact_id, Artifact.scan_status == ScanStatus.UNFETCHED)
        .values(scan_status=ScanStatus.PENDING)
    ).rowcount  # type: ignore[attr-defined]
    if moved:
        queue_scans(session, [artifact_id], ScanReason.PASSIVE_FETCH)
    return bool(moved)


def queue_scans(session: Session, artifact_ids: Iterable[int], reason: ScanReason) -> int:
    """Ask for a scan of each artifact (an existing request is kept). The status is not touched:
    a rescan does not take a served package away while it runs."""
    now = utcnow()
    rows = [
        {"artifact_id": aid, "reason": str(reason), "requested_at": now, "attempts": 0}
        for aid in artifact_ids
    ]
    for start in range(0, len(rows), _CHUNK):
        insert_ignore_many(session, ScanRequest, rows[start : start + _CHUNK], ["artifact_id"])
    if rows:
        changed(session)  # the scanner wakes once this commits
    return len(rows)


def queue_matches(session: Session, artifact_ids: Iterable[int]) -> int:
    """Ask for the vulnerability matching of new artifacts (an existing request is kept); the
    queued job (``dispatch_match`` after commit) is the fast path, this row the guarantee."""
    now = utcnow()
    rows = [{"artifact_id": aid, "requested_at": now} for aid in artifact_ids]
    for start in range(0, len(rows), _CHUNK):
        insert_ignore_many(session, MatchRequest, rows[start : start + _CHUNK], ["artifact_id"])
    return len(rows)


def _ids(session: Session, channel_id: int, keys: list[tuple[str, str]]) -> list[int]:
    subdirs = {sd for sd, _ in keys}
    names = {fn for _, fn in keys}
    wanted = set(keys)
    rows = session.execute(
        select(Artifact.id, Artifact.subdir, Artifact.filename).where(
            Artifact.channel_id == channel_id,
            Artifact.subdir.in_(subdirs),
            Artifact.filename.in_(names),
        )
    ).all()
    return [r.id for r in rows if (r.subdir, r.filename) in wanted]
