"""Fixtures of the auth integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stockade.container import Container
from stockade.settings import load_settings


@pytest.fixture
def other(container: Container) -> Iterator[Container]:
    """A second process on the same database (its own in-memory caches)."""
    settings = load_settings(
        data_dir=container.settings.data_dir, database_url=container.settings.database_url
    )
    built = Container.build(settings)
    yield built
    built.close()
