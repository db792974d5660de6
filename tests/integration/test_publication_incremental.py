"""Issue 18 target 4: an incremental publication serves exactly what a from-scratch one would.

The publisher remembers what its last publication of a subdir fingerprinted (shard memo), the
run_exports entries of package contents and the records it found valid. After every kind of
change (adds in both formats, a re-upload with --force, removals, patches that change, revoke
and remove records, quarantine and release) the index it switched in must be byte for byte what a
fresh publisher (nothing remembered) builds from the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import zstandard
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.artifacts import ArtifactService, Selection
from stockade.channels.models import Artifact, Channel, SubdirShard
from stockade.channels.patching import PatchService
from stockade.channels.publication import PublicationService
from stockade.channels.scanstate import ScanStatus, set_status
from stockade.channels.upload import UploadService, validate_upload
from stockade.conda.shards import read_shard_index
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.storage.staging import stage_stream
from tests.factories.packages import PackageSpec, build
from tests.integration.conftest import add_package, index_row, make_channel
from tests.support.settle import scan_all

CHANNEL = "incr"
SUBDIR = "linux-64"


def _published(container: Container) -> dict[str, Any]:
    """What the switched-in index serves (shard index without its ``created_at``)."""
    row = index_row(container, CHANNEL, SUBDIR)
    blobs = container.blobs
    assert row.repodata_sha256 and row.repodata_zst_sha256 and row.shard_index_sha256
    assert row.run_exports_sha256
    with container.read_factory() as session:
        shards = dict(
            session.execute(
                select(SubdirShard.name, SubdirShard.shard_sha256).where(
                    SubdirShard.subdir_index_id == row.id, SubdirShard.retired_at.is_(None)
                )
            ).all()
        )
    index = read_shard_index(blobs.read_bytes(row.shard_index_sha256))
    return {
        "repodata": row.repodata_sha256,
        "zst": zstandard.ZstdDecompressor().decompress(blobs.read_bytes(row.repodata_zst_sha256)),
        "run_exports": row.run_exports_sha256,
        "shards": shards,
        "index": {name: digest.hex() for name, digest in index["shards"].items()},
        "count": row.record_count,
        "warnings": row.warnings,
    }


def _from_scratch(container: Container) -> dict[str, Any]:
    """What a new publisher (no memory of earlier publications) builds from the same rows."""
    row = index_row(container, CHANNEL, SUBDIR)
    fresh = PublicationService(container.factory, container.blobs)
    built = fresh._build(row.id, row.channel_id, SUBDIR, row.published_rev)
    blobs = container.blobs
    index = read_shard_index(blobs.read_bytes(built.shard_index))
    return {
        "repodata": built.repodata,
        "zst": zstandard.ZstdDecompressor().decompress(blobs.read_bytes(built.repodata_zst)),
        "run_exports": built.run_exports,
        "shards": {name: sha for name, (_fp, sha) in built.shards.items()},
        "index": {name: digest.hex() for name, digest in index["shards"].items()},
        "count": built.record_count,
        "warnings": built.warnings,
    }


def _served(container: Container) -> dict[str, Any]:
    row = index_row(container, CHANNEL, SUBDIR)
    assert row.repodata_sha256 is not None
    document: dict[str, Any] = orjson.loads(container.blobs.read_bytes(row.repodata_sha256))
    return document


def _publish_and_compare(container: Container) -> dict[str, Any]:
    assert container.publisher.run_pending() >= 1
    published = _published(container)
    assert published == _from_scratch(container)
    assert published["zst"] == container.blobs.read_bytes(published["repodata"])
    return _served(container)


def _upload(container: Container, admin: Principal, tmp_path: Path, **spec: Any) -> None:
    fmt = spec.pop("fmt", "conda")
    folder = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    add_package(
        container, admin, CHANNEL, build(folder, PackageSpec(subdir=SUBDIR, **spec), fmt=fmt)
    )


def _force_upload(container: Container, admin: Principal, path: Path) -> None:
    with path.open("rb") as fh:
        staged = stage_stream(fh, container.blobs.staging_dir(), path.name, max_size=10**9)
    upload = validate_upload(staged, container.limits)
    container.blobs.put_file(staged.path, staged.sha256)
    with transaction(container.factory) as session:
        UploadService(session, container.blobs).record_all(admin, CHANNEL, [upload], force=True)
    scan_all(container)


def _set_status(container: Container, filename: str, status: ScanStatus) -> None:
    with transaction(container.factory) as session:
        artifact = session.scalars(select(Artifact).where(Artifact.filename == filename)).one()
        set_status(session, artifact, status)


def test_incremental_publication_equals_a_full_rebuild(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, CHANNEL)
    exports = {"weak": ["zlib >=1.2"]}
    _upload(container, admin, tmp_path, name="zlib", run_exports=exports)
    _upload(container, admin, tmp_path, name="zlib", version="1.3", fmt="tar.bz2")
    _upload(container, admin, tmp_path, name="curl", depends=("zlib >=1.2",))
    _upload(container, admin, tmp_path, name="numpy", depends=("python >=3.10",))
    served = _publish_and_compare(container)
    assert set(served["packages.conda"]) == {
        "zlib-1.0-0.conda",
        "curl-1.0-0.conda",
        "numpy-1.0-0.conda",
    }
    row = index_row(container, CHANNEL, SUBDIR)
    assert container.publisher._memos.get(row.id) is not None  # the next one is incremental

    # adds: a new name, a new version of an existing one
    _upload(container, admin, tmp_path, name="scipy", depends=("numpy",))
    _upload(container, admin, tmp_path, name="curl", version="2.0", run_exports=exports)
    served = _publish_and_compare(container)
    assert "curl-2.0-0.conda" in served["packages.conda"]

    # patches: change a field, revoke one record, remove another
    with transaction(container.factory) as session:
        patches = PatchService(session)
        patches.set(admin, CHANNEL, SUBDIR, "numpy-1.0-0.conda", changes={"depends": ["python"]})
        patches.set(admin, CHANNEL, SUBDIR, "zlib-1.3-0.tar.bz2", revoked=True)
        patches.set(admin, CHANNEL, SUBDIR, "scipy-1.0-0.conda", removed=True)
    served = _publish_and_compare(container)
    assert served["packages.conda"]["numpy-1.0-0.conda"]["depends"] == ["python"]
    assert served["packages"]["zlib-1.3-0.tar.bz2"]["revoked"] is True
    assert served["removed"] == ["scipy-1.0-0.conda"]

    # a patch undone: the record is served as stored again
    with transaction(container.factory) as session:
        PatchService(session).clear(admin, CHANNEL, SUBDIR, "scipy-1.0-0.conda")
    served = _publish_and_compare(container)
    assert served["removed"] == [] and "scipy-1.0-0.conda" in served["packages.conda"]

    # quarantine (a malicious verdict takes a served file out), then its release
    _set_status(container, "curl-2.0-0.conda", ScanStatus.MALICIOUS)
    served = _publish_and_compare(container)
    assert "curl-2.0-0.conda" not in served["packages.conda"]
    _set_status(container, "curl-2.0-0.conda", ScanStatus.CLEAN)
    served = _publish_and_compare(container)
    assert "curl-2.0-0.conda" in served["packages.conda"]

    # removals: one file of a name, then the last file of a name (its shard is gone)
    with transaction(container.factory) as session:
        ArtifactService(session).remove(
            admin, CHANNEL, Selection(files=[f"{SUBDIR}/curl-1.0-0.conda"])
        )
    served = _publish_and_compare(container)
    with transaction(container.factory) as session:
        ArtifactService(session).remove(admin, CHANNEL, Selection(name="scipy"))
    served = _publish_and_compare(container)
    assert not any(fn.startswith("scipy-") for fn in served["packages.conda"])
    assert "scipy" not in _published(container)["shards"]

    # a forced re-upload of the same filename with other contents
    folder = tmp_path / "forced"
    folder.mkdir()
    spec = PackageSpec(name="numpy", subdir=SUBDIR, depends=("python >=3.12",))
    _force_upload(container, admin, build(folder, spec))
    served = _publish_and_compare(container)
    assert served["packages.conda"]["numpy-1.0-0.conda"]["depends"] == ["python"]  # still patched


def _channeldata(container: Container) -> str | None:
    with container.read_factory() as session:
        return session.scalar(select(Channel.channeldata_sha256).where(Channel.name == CHANNEL))


def test_a_slow_channeldata_build_waits_while_indexes_are_pending(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """An upload that arrives while a big channel's channeldata.json is due is published first
    (it used to wait for the whole channeldata build, seconds at 100,000 records)."""
    make_channel(container, admin, CHANNEL)
    _upload(container, admin, tmp_path, name="zlib")
    publisher = container.publisher
    publisher.run_pending()
    before = _channeldata(container)
    channel_id = index_row(container, CHANNEL, SUBDIR).channel_id
    with transaction(container.factory) as session:  # its last build took 5 s; asked for now
        channel = session.get_one(Channel, channel_id)
        channel.channeldata_build_ms, channel.channeldata_next_at = 5000, None
        channel.channeldata_requested_at = utcnow()
    _upload(container, admin, tmp_path, name="curl")  # an index publication is pending
    publisher.publish_due_channeldata()
    assert _channeldata(container) == before and _channeldata_asked(container)
    publisher.run_pending()  # the index first, then the channeldata
    assert "curl-1.0-0.conda" in _served(container)["packages.conda"]
    assert _channeldata(container) != before and not _channeldata_asked(container)


def _channeldata_asked(container: Container) -> bool:
    with container.read_factory() as session:
        when = session.scalar(
            select(Channel.channeldata_requested_at).where(Channel.name == CHANNEL)
        )
    return when is not None
