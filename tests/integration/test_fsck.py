"""``stockade fsck`` (storage/fsck.py): referenced blobs missing, of another size or damaged are
found and named by what references them; orphans are listed, and collected with ``repair`` only
when older than the grace period and still named by nothing when their batch is decided."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from stockade.airgap.models import AirgapExport
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.schema import metadata
from stockade.storage.fsck import Fsck, FsckReport, Phase, ProblemKind
from stockade.storage.references import COLUMNS, NOT_BLOBS, pages
from tests.integration.conftest import add_package, make_channel
from tests.support.s3 import S3Server
from tests.support.settle import settle

PACKAGES = ("test-package-0.1-0.tar.bz2", "other-package-0.2-0.conda")


def test_every_sha256_column_is_declared_a_blob_reference_or_not() -> None:
    """A new column naming a blob must be added to storage/references.py, or fsck --repair
    would collect what it names."""
    hashes = {
        f"{t.name}.{c.name}"
        for t in metadata.tables.values()
        for c in t.columns
        if c.name.endswith("sha256")
    }
    assert hashes - COLUMNS - set(NOT_BLOBS) == set()
    assert COLUMNS | set(NOT_BLOBS) <= hashes  # nothing declared that the models lack


def _fsck(container: Container, **options: object) -> FsckReport:
    """A run that collects at once (the settle wait has its own test)."""
    options.setdefault("settle", timedelta(0))
    return Fsck(container.factory, container.read_factory, container.blobs, **options).run()  # type: ignore[arg-type]


def _age(container: Container, sha: str, days: float) -> None:
    path = container.blobs.local_path(sha)
    assert path is not None
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def _artifacts(container: Container) -> list[Artifact]:
    with container.read_factory() as session:
        return list(session.scalars(select(Artifact).order_by(Artifact.filename)))


def test_fsck_checks_references_and_collects_only_old_unreferenced_orphans(
    container: Container, admin: Principal, testdata: Path
) -> None:
    make_channel(container, admin, "fs")
    for name in PACKAGES:
        add_package(container, admin, "fs", testdata / "packages" / name)
    settle(container)
    first = _fsck(container, verify=True)
    assert first.clean, first.problems
    assert first.referenced >= 2 + 3  # the two packages, the repodata files, shards...
    assert first.verified == first.referenced
    superseded = first.orphan_count  # earlier publications' index files

    old = container.blobs.put_bytes(b"an old orphan")
    young = container.blobs.put_bytes(b"a young orphan: an upload not recorded yet")
    _age(container, old, 3)
    listed = _fsck(container)
    assert listed.orphan_count == superseded + 2 and listed.collected == 0
    assert {old, young} <= {o.sha256 for o in listed.orphans}
    assert container.blobs.exists(old)  # listing deletes nothing

    repaired = _fsck(container, repair=True, grace=timedelta(hours=24))
    assert not container.blobs.exists(old) and container.blobs.exists(young)
    assert repaired.collected == 1 + sum(
        1 for o in listed.orphans if o.sha256 not in {old, young} and _older(o, 24)
    )
    again = _fsck(container, verify=True)
    assert again.clean and young in {o.sha256 for o in again.orphans}
    assert again.referenced == first.referenced  # nothing referenced was collected


def test_references_come_in_pages_each_blob_once_with_all_its_referrers(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """Keyset pages (each in a transaction of its own) of a few sha256s: every referenced blob
    once, ascending, with every row naming it (a package in two channels: two referrers)."""
    for channel in ("pa", "pb"):
        make_channel(container, admin, channel)
        add_package(container, admin, channel, testdata / "packages" / PACKAGES[0])
    settle(container)
    whole = [item for page in pages(container.read_factory, size=10_000) for item in page]
    paged = list(pages(container.read_factory, size=3))
    assert len(paged) > 2 and all(len(page) <= 3 for page in paged)
    flat = [item for page in paged for item in page]
    assert [sha for sha, _ in flat] == sorted({sha for sha, _ in whole})
    assert {sha: sorted(refs) for sha, refs in flat} == {sha: sorted(r) for sha, r in whole}
    package = _artifacts(container)[0].sha256
    assert sorted(r.where for r in dict(flat)[package]) == [
        f"pa/linux-64/{PACKAGES[0]}",
        f"pb/linux-64/{PACKAGES[0]}",
    ]


def test_an_airgap_exports_files_are_referenced(container: Container, admin: Principal) -> None:
    """The repodata and signing files an export's bundle is written from are named in its
    ``counts`` (JSON), not in columns: still referenced, never collected."""
    make_channel(container, admin, "ex")
    shas = [container.blobs.put_bytes(f"export part {n}".encode()) for n in range(4)]
    for sha in shas:
        _age(container, sha, 5)
    with transaction(container.factory) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == "ex"))
        session.add(
            AirgapExport(
                bundle_id="b-1",
                channel_id=channel_id,
                channel_name="ex",
                subdirs=["noarch"],
                manifest_sha256=shas[0],
                covered_sha256=shas[1],
                signature=b"{}",
                counts={
                    "repodata": {"repodata/noarch.json.zst": shas[2]},
                    "signing": {"signing/1.root.json": shas[3]},
                },
            )
        )
    report = _fsck(container, repair=True, grace=timedelta(0))
    assert report.clean and all(container.blobs.exists(sha) for sha in shas)
    named = {sha: refs for page in pages(container.read_factory, size=2) for sha, refs in page}
    assert named[shas[3]][0].where == "airgap export b-1 signing/1.root.json"


def _older(orphan: object, hours: float) -> bool:
    modified = getattr(orphan, "modified_at", None)
    return modified is not None and utcnow() - modified > timedelta(hours=hours)


def test_missing_and_damaged_blobs_are_named_by_what_references_them(
    container: Container, admin: Principal, testdata: Path
) -> None:
    make_channel(container, admin, "hurt")
    for name in PACKAGES:
        add_package(container, admin, "hurt", testdata / "packages" / name)
    settle(container)
    gone, bent = _artifacts(container)[:2]
    container.blobs.delete(gone.sha256)
    bent_path = container.blobs.local_path(bent.sha256)
    assert bent_path is not None
    original = bent_path.read_bytes()
    bent_path.write_bytes(bytes(len(original)))  # same size, other bytes

    quick = _fsck(container)
    assert [(p.sha256, p.kind) for p in quick.problems] == [(gone.sha256, ProblemKind.MISSING)]
    assert [r.where for r in quick.problems[0].referrers] == [f"hurt/{gone.subdir}/{gone.filename}"]
    assert not quick.clean

    thorough = _fsck(container, verify=True, repair=True, grace=timedelta(0))
    kinds = {p.sha256: p.kind for p in thorough.problems}
    assert kinds == {gone.sha256: ProblemKind.MISSING, bent.sha256: ProblemKind.CORRUPT}
    assert container.blobs.exists(bent.sha256)  # repair never deletes a referenced blob

    bent_path.write_bytes(original + b"x")
    sized = _fsck(container)
    assert {p.sha256: p.kind for p in sized.problems}[bent.sha256] == ProblemKind.SIZE
    with transaction(container.factory) as session:  # a mirrored record without a size
        session.execute(update(Artifact).where(Artifact.id == bent.id).values(size=0))
    assert bent.sha256 not in {p.sha256 for p in _fsck(container).problems}

    # A passive mirror's record not fetched yet has no bytes: not a problem.
    with transaction(container.factory) as session:
        session.execute(
            update(Artifact).where(Artifact.id == gone.id).values(scan_status="unfetched")
        )
    bent_path.write_bytes(original)
    assert _fsck(container).clean


def test_an_orphan_referenced_before_its_batch_is_decided_is_kept(
    container: Container, admin: Principal
) -> None:
    """The listing saw no reference; one committed before the batch's transaction (a
    re-upload of old bytes, a copy) is seen by the re-check, and the blob stays."""
    make_channel(container, admin, "race")
    sha = container.blobs.put_bytes(b"old bytes named again")
    _age(container, sha, 10)

    def name_it(phase: Phase, _advance: int, _total: int | None) -> None:
        if phase == Phase.COLLECT:
            with transaction(container.factory) as session:
                session.execute(
                    update(Channel).where(Channel.name == "race").values(notices_sha256=sha)
                )

    report = Fsck(
        container.factory,
        container.read_factory,
        container.blobs,
        repair=True,
        grace=timedelta(0),
        progress=name_it,
        settle=timedelta(0),
    ).run()
    assert report.kept_referenced >= 1
    assert container.blobs.exists(sha)
    assert _fsck(container).clean


def test_a_batch_gives_way_to_a_long_writer_on_postgresql(
    container: Container, admin: Principal
) -> None:
    """A transaction writing a referencing table holds the batch's SHARE lock off: fsck waits
    a moment, then leaves the batch to the next run instead of stalling uploads behind it."""
    if container.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the batch queues for the write lock like any writer")
    make_channel(container, admin, "busy")
    sha = container.blobs.put_bytes(b"an orphan during a long upload")
    _age(container, sha, 3)
    with container.factory() as writer, writer.begin():
        writer.execute(update(Channel).where(Channel.name == "busy").values(description="x"))
        report = _fsck(container, repair=True, grace=timedelta(0))
    assert report.deferred >= 1 and container.blobs.exists(sha)
    assert _fsck(container, repair=True, grace=timedelta(0)).collected >= 1
    assert not container.blobs.exists(sha)


def test_collection_waits_until_no_server_can_still_serve_an_old_pointer(
    container: Container,
) -> None:
    """An index file superseded just before the listing may still be answered by a serving
    process for a moment (its pointers are re-read every 0.1 s, channel files every 2 s): the
    first deletion waits ``settle`` after the references were read, once per run."""
    shas = [container.blobs.put_bytes(f"superseded {n}".encode()) for n in range(3)]
    for sha in shas:
        _age(container, sha, 2)
    waits: list[float] = []
    report = Fsck(
        container.factory,
        container.read_factory,
        container.blobs,
        repair=True,
        grace=timedelta(hours=1),
        settle=timedelta(seconds=10),
        sleep=waits.append,
    ).run()
    assert len(waits) == 1 and 0 < waits[0] <= 10
    assert report.collected >= 3 and not any(container.blobs.exists(sha) for sha in shas)


@pytest.mark.one_backend  # the database side runs on both above; this is the store's side
def test_fsck_on_the_s3_store(
    container: Container, admin: Principal, s3_server: S3Server, tmp_path: Path
) -> None:
    """Only the BlobStore protocol is used: on S3 (moto), a referenced blob missing or damaged
    is found and named, an old orphan collected, a referenced one kept."""
    store = s3_server.store(s3_server.new_bucket(), tmp_path / "staging", page_size=2)
    make_channel(container, admin, "s3")
    named, gone, bent, orphan = (store.put_bytes(f"blob {n}".encode()) for n in range(4))
    with transaction(container.factory) as session:
        session.execute(
            update(Channel)
            .where(Channel.name == "s3")
            .values(notices_sha256=named, channeldata_sha256=gone)
        )
        session.add(
            AirgapExport(
                bundle_id="b-s3",
                channel_id=session.scalar(select(Channel.id).where(Channel.name == "s3")),
                channel_name="s3",
                subdirs=[],
                manifest_sha256=bent,
                covered_sha256=named,
                signature=b"{}",
            )
        )
    store.delete(gone)
    store.client.put_object(Bucket=store.bucket, Key=store.key_for(bent), Body=b"blob 9")
    later = utcnow() + timedelta(days=2)  # S3 dates its objects itself: look from the future
    report = Fsck(
        container.factory,
        container.read_factory,
        store,
        verify=True,
        repair=True,
        now=lambda: later,
        settle=timedelta(0),
    ).run()
    assert {p.sha256: p.kind for p in report.problems} == {
        gone: ProblemKind.MISSING,
        bent: ProblemKind.CORRUPT,
    }
    assert [r.where for r in report.problems[0].referrers + report.problems[1].referrers] in (
        ["s3/channeldata.json", "airgap export b-s3 manifest"],
        ["airgap export b-s3 manifest", "s3/channeldata.json"],
    )
    assert report.collected == 1 and not store.exists(orphan)
    assert store.exists(named) and store.exists(bent)
