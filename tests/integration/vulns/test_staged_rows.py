"""A mirror run's staged rows (written in batches, admitted when the run completes) are not
matched by a feed sync meanwhile: a run that fails or stops discards them, and webhooks would have
announced matches for files that never existed. Once admitted, the run's matching takes them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.channels.scanstate import ScanStatus
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.vulns.matcher import Matcher
from tests.integration.vulns.support import (
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)


def _set_status(container: Container, artifact_id: int, status: ScanStatus) -> None:
    with transaction(container.factory) as session:
        session.execute(
            update(Artifact).where(Artifact.id == artifact_id).values(scan_status=status)
        )


def test_a_feed_sync_leaves_staged_rows_alone(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    channel = channel_id(container, admin)
    (staged,) = add_artifacts(container, channel, [("aiohttp", "3.7.3", "0")], match=False)
    _set_status(container, staged, ScanStatus.STAGED)
    sync(
        container,
        add_feed(container, admin, "osv", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    assert [k for k in matches(container) if k[1] == "aiohttp"] == []

    _set_status(container, staged, ScanStatus.UNFETCHED)  # the run completed: admitted
    with transaction(container.factory) as session:
        Matcher(session).match_artifacts([staged])
    assert [k for k in matches(container) if k[1:] == ("aiohttp", "3.7.3", "0")] != []
