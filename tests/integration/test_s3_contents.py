"""Package contents are read through the blob store, never a local path: scans and the mirrored
packages' contents (link scripts) work with blobs in S3 (moto's real server)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, PackageContent
from stockade.container import Container
from stockade.mirroring.contents import KnownLinkScripts, read_downloaded
from stockade.scanning.models import ArtifactScan
from stockade.settings import load_settings
from stockade.storage.s3 import S3BlobStore
from tests.integration.conftest import add_package, make_channel
from tests.support.s3 import S3Server
from tests.support.server import fresh_database

# SQLite only: what is checked is where package bytes are read from (the database's side of
# scans and contents runs on both backends in the scanning and mirroring tests).
pytestmark = pytest.mark.one_backend

LINK_SCRIPTS = "link-scripts-0.1.0-h4616a5c_0.conda"  # has pre-link / post-link scripts


@pytest.fixture(scope="module")
def container(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    tmp_path = tmp_path_factory.mktemp("s3-contents")
    with fresh_database("sqlite", tmp_path, None, migrated=True) as url:
        settings = load_settings(
            data_dir=tmp_path, database_url=url, storage=s3_server.storage(s3_server.new_bucket())
        )
        built = Container.build(settings)
        built.bootstrap()
        yield built
        built.close()


def test_an_upload_is_scanned_through_the_store(
    container: Container, admin: Principal, testdata: Path
) -> None:
    assert isinstance(container.blobs, S3BlobStore)
    make_channel(container, admin, "s3scan")
    add_package(container, admin, "s3scan", testdata / "packages" / LINK_SCRIPTS)
    with container.read_factory() as session:
        artifact = session.scalars(select(Artifact)).one()
        scan = session.get(ArtifactScan, artifact.id)
    assert scan is not None and scan.verdict == "clean", scan and scan.findings
    assert not list(container.blobs.staging_dir().iterdir())  # the scan's copy is gone


def test_mirrored_contents_are_read_through_the_store(container: Container, testdata: Path) -> None:
    """Before: a package without a local file was skipped, its link scripts unknown."""
    data = (testdata / "packages" / LINK_SCRIPTS).read_bytes()
    sha = container.blobs.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    known = KnownLinkScripts()
    with container.factory() as session:
        unreadable = read_downloaded(
            session, container.blobs, container.limits, [(LINK_SCRIPTS, sha)], known
        )
        session.commit()
    assert unreadable == []
    assert known.has_link_scripts(LINK_SCRIPTS) is True
    with container.read_factory() as session:
        assert session.get(PackageContent, sha) is not None
    assert not list(container.blobs.staging_dir().iterdir())


def test_a_mirrored_file_missing_from_the_store_is_left_unknown(container: Container) -> None:
    known = KnownLinkScripts()
    with container.factory() as session:
        unreadable = read_downloaded(
            session, container.blobs, container.limits, [("gone-1.0-0.conda", "a" * 64)], known
        )
    assert unreadable == []
    assert known.has_link_scripts("gone-1.0-0.conda") is None
