"""A container (services + database + blob store) per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.channels.models import Channel, SubdirIndex
from stockade.channels.service import ChannelService
from stockade.channels.upload import UploadService, validate_upload
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.settings import load_settings
from stockade.storage.staging import stage_stream
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database
from tests.support.settle import scan_all


@pytest.fixture(params=backends())
def container(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    with fresh_database(str(request.param), tmp_path, PG_URL, migrated=True) as url:
        built = Container.build(load_settings(data_dir=tmp_path, database_url=url))
        built.bootstrap()
        yield built
        built.close()


@pytest.fixture
def admin(container: Container) -> Principal:
    with transaction(container.factory) as session:
        users = UserService(session)
        return users.principal_for(users.get_by_name("admin"), via="password")


def make_channel(container: Container, admin: Principal, name: str) -> None:
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, name)


def index_row(container: Container, channel: str, subdir: str) -> SubdirIndex:
    """The publication row of ``channel``'s ``subdir`` (it must exist)."""
    with container.read_factory() as session:
        row = session.scalar(
            select(SubdirIndex)
            .join(Channel, Channel.id == SubdirIndex.channel_id)
            .where(Channel.name == channel, SubdirIndex.subdir == subdir)
        )
        assert row is not None
        return row


def add_package(container: Container, admin: Principal, channel: str, path: Path) -> None:
    """The upload path of the API, without HTTP."""
    with path.open("rb") as fh:
        staged = stage_stream(fh, container.blobs.staging_dir(), path.name, max_size=10**9)
    upload = validate_upload(staged, container.limits)
    container.blobs.put_file(staged.path, staged.sha256)
    with transaction(container.factory) as session:
        UploadService(session, container.blobs).record_all(admin, channel, [upload], force=False)
    # Held until its verdict (the default "hold until clean"): scan it as the scanner thread would.
    scan_all(container)
