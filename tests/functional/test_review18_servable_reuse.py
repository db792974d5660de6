"""Review of issue 18 (servable map): a channel deleted and another created in its place must
never have the old channel's index or files served under the new one.

SQLite (no AUTOINCREMENT) gives a deleted row's id to the next row when it was the highest: the
new channel gets the old channel's id and its subdir row the old subdir row's id. When the new
subdir has reached the same revisions (one upload, one publication), every aggregate that
``ServingState`` compares is unchanged, so the process keeps the old channel's index pointer and
package pointers, keyed by (channel id, subdir[, filename]) with an equal version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import own_server
from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional]

OLD = "dependency-1.0-0.conda"
NEW = "dependent-1.0-0.conda"


@pytest.fixture
def alone(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own: the channels made here are the highest ids of their tables."""
    with own_server(backend, tmp_path_factory, "review18-reuse") as live:
        yield live


def _recipe(testdata: Path, name: str) -> Path:
    return testdata / "channels" / "test-recipes" / "noarch" / name


def test_a_new_channel_never_serves_a_deleted_channels_files(
    alone: LiveServer, testdata: Path
) -> None:
    admin = alone.admin
    secret, name = "secret", "open"
    body = {"name": secret, "privacy": "private"}
    assert admin.post("/api/v1/channels", json=body).status_code == 201
    assert alone.upload(secret, _recipe(testdata, OLD)).status_code == 201
    alone.wait_published(secret)
    assert admin.get(f"/conda/{secret}/noarch/{OLD}").status_code == 200  # remembered here
    old_path = f"/conda/{name}/noarch/{OLD}"
    with httpx.Client(base_url=alone.url, timeout=30) as anonymous:
        # No conda request in between (an idle worker, or simply a quiet minute): the private
        # channel is deleted and a public one created (any name) that reaches the same revisions.
        assert admin.delete(f"/api/v1/channels/{secret}").status_code == 204
        assert admin.post("/api/v1/channels", json={"name": name}).status_code == 201
        assert alone.upload(name, _recipe(testdata, NEW)).status_code == 201
        alone.wait_published(name)

        repodata = anonymous.get(f"/conda/{name}/noarch/repodata.json")
        assert repodata.status_code == 200
        assert NEW in repodata.text, "the new channel's index is not served"
        assert OLD not in repodata.text, "the deleted channel's index is served"
        stale = anonymous.get(old_path)
        assert stale.status_code == 404, (
            "a file of the deleted private channel is served anonymously"
        )
