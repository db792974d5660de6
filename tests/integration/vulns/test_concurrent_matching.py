"""Two matchers adding matches to one artifact at once (a feed sync and an upload's matching):
the artifact's summary counts both. On PostgreSQL they run one after the other (an advisory lock);
without it, the second would recompute the summary without the first's uncommitted match and
overwrite it once the first commits. SQLite serialises writers by itself."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import ArtifactVulnSummary, VulnMatch, VulnTarget
from tests.integration.vulns.support import add_artifacts, add_feed, channel_id, osv_folder, sync


def test_concurrent_matchers_keep_both_matches_in_the_summary(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    if container.settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time; the race is PostgreSQL's")
    sync(
        container,
        add_feed(container, admin, "osv", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    (artifact,) = add_artifacts(
        container, channel_id(container, admin), [("aiohttp", "3.7.3", "0")], match=False
    )
    with container.factory() as session:
        advisories = sorted(
            session.scalars(
                select(VulnTarget.vulnerability_id).where(VulnTarget.conda_name == "aiohttp")
            )
        )
    first, second = advisories[0], advisories[1:]
    wrote_first, finished = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def one(ids: list[int], hold: bool) -> None:
        try:
            with transaction(container.factory) as session:
                Matcher(session).match_vulnerabilities(ids)
                if hold:  # keep the transaction open while the other matcher runs
                    wrote_first.set()
                    finished.wait(timeout=5)
        except BaseException as exc:
            failures.append(exc)

    holder = threading.Thread(target=one, args=([first], True))
    holder.start()
    assert wrote_first.wait(timeout=60)
    other = threading.Thread(target=one, args=(second, False))
    other.start()
    other.join(timeout=2)  # with the lock it is still waiting; let the first commit
    finished.set()
    holder.join(timeout=60)
    other.join(timeout=60)
    assert not failures, failures
    with container.factory() as session:
        summary = session.get(ArtifactVulnSummary, artifact)
        stored = session.scalar(
            select(func.count()).select_from(VulnMatch).where(VulnMatch.artifact_id == artifact)
        )
    assert stored is not None
    assert stored > 1
    assert summary is not None
    assert sum(summary.counts.values()) == stored
