"""Replicas started at once on an empty database (a compose file, several systemd units): each
bootstraps the built-in roles and the first admin; exactly one admin is made and no start fails."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stockade.auth.models import User
from stockade.auth.service import UserService
from stockade.container import Container
from stockade.settings import load_settings
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database


@pytest.mark.parametrize("backend", backends())
def test_a_replica_starting_while_another_creates_the_admin_starts(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path, PG_URL, migrated=True) as url:
        settings = load_settings(data_dir=tmp_path, database_url=url, admin_password="first-admin!")
        first, second = Container.build(settings), Container.build(settings)
        try:
            # The first replica has written the roles and the admin, not yet committed: the
            # second one's inserts wait for it (PostgreSQL: on the unique indexes; SQLite: the
            # write lock), then find them there.
            session = first.factory()
            made = UserService(session).ensure_first_admin("admin", "first-admin!")
            assert made is not None
            result: list[object] = []
            starting = threading.Thread(target=lambda: result.append(_start(second)))
            starting.start()
            starting.join(1.0)
            assert starting.is_alive(), "the second start did not wait for the first"
            session.commit()
            session.close()
            starting.join(30)
            assert result == [None], result  # started, and made no admin of its own
            with first.factory() as check:
                assert check.scalar(select(func.count()).select_from(User)) == 1
        finally:
            first.close()
            second.close()


def _start(container: Container) -> object:
    try:
        return container.bootstrap()
    except Exception as error:  # the assertion above shows it
        return error
