"""Curation (history, audit, re-status, survival of re-syncs), security.json, and the DB lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import null as sql_null
from sqlalchemy import select, update

from stockade.audit.models import AuditEvent
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, PackageContent
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.vulns.curation import CurationService
from stockade.vulns.errors import VulnerabilityNotFoundError
from stockade.vulns.lookup import DbVulnerabilityLookup
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import ArtifactVulnSummary, VulnMatch
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.security import BlobSecurityReader
from tests.factories.packages import PackageSpec, build_conda, file
from tests.integration.conftest import add_package
from tests.integration.vulns.support import (
    VULNS,
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)

VULN = "PYSEC-2021-76"  # aiohttp < 3.7.4
KEY = (VULN, "aiohttp", "3.7.3")


def _curate(
    container: Container,
    admin: Principal,
    status: str,
    *,
    builds: str | None = None,
    note: str = "reviewed",
    version: str = "3.7.3",
    vuln: str = VULN,
) -> int:
    with transaction(container.factory) as session:
        _, counts = CurationService(session).curate(
            admin, vuln, "aiohttp", version, status, note, builds=builds
        )
        return counts.restatused


def _synced(container: Container, admin: Principal, tmp_path: Path) -> tuple[Path, int]:
    folder = osv_folder(tmp_path, "aiohttp")
    feed = add_feed(container, admin, "pypa", folder.as_uri(), "osv")
    sync(container, feed)
    return folder, feed


def test_cleared_survives_resync(container: Container, admin: Principal, tmp_path: Path) -> None:
    chan = channel_id(container, admin)
    add_artifacts(container, chan, [("aiohttp", "3.7.3", "py_0")], match=False)
    folder, feed = _synced(container, admin, tmp_path)
    assert matches(container)[(*KEY, "py_0")] == "reported"

    assert _curate(container, admin, "cleared", note="the middleware is not shipped") == 1
    assert matches(container)[(*KEY, "py_0")] == "cleared"

    assert sync(container, feed).not_modified  # the same folder again
    record = folder / "aiohttp" / f"{VULN}.yaml"  # and a changed record: re-matched
    record.write_text(record.read_text().replace("modified:", "summary: edited\nmodified:", 1))
    again = sync(container, feed)
    assert again.changed == 1
    assert matches(container)[(*KEY, "py_0")] == "cleared"
    with container.factory() as session:
        origin = session.scalar(
            select(VulnMatch.status_origin).where(VulnMatch.status == "cleared")
        )
    assert origin == "curation"


def test_new_build_of_active_version_is_reported_unless_covered(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    chan = channel_id(container, admin)
    add_artifacts(container, chan, [("aiohttp", "3.7.3", "py38_0")], match=False)
    _synced(container, admin, tmp_path)
    _curate(container, admin, "active", builds="py38_*", note="confirmed on the py38 builds")
    assert matches(container)[(*KEY, "py38_0")] == "active"

    add_artifacts(container, chan, [("aiohttp", "3.7.3", "py39_0"), ("aiohttp", "3.7.3", "py38_1")])
    found = matches(container)
    assert found[(*KEY, "py39_0")] == "reported"  # not covered by py38_*
    assert found[(*KEY, "py38_1")] == "active"  # covered

    _curate(container, admin, "mitigated", note="every build patched")  # builds=None: all builds
    found = matches(container)
    assert {found[(*KEY, b)] for b in ("py38_0", "py38_1", "py39_0")} == {"mitigated"}

    _curate(container, admin, "active", builds="py39_*", note="py39 build regressed")
    found = matches(container)
    assert found[(*KEY, "py39_0")] == "active"  # the latest covering decision wins
    assert found[(*KEY, "py38_0")] == "mitigated"


def test_curation_history_audit_and_validation(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    _synced(container, admin, tmp_path)
    _curate(container, admin, "active", note="first look")
    _curate(container, admin, "cleared", note="second look")
    with transaction(container.factory) as session:
        service = CurationService(session)
        history = service.history(admin, VULN)
        assert [(c.status, c.note) for c in history] == [
            ("active", "first look"),
            ("cleared", "second look"),
        ]
        with pytest.raises(InvalidInputError):
            service.curate(admin, VULN, "aiohttp", "3.7.3", "cleared", "   ")
        with pytest.raises(InvalidInputError):
            service.curate(admin, VULN, "aiohttp", "3.7.3", "fixed", "note")
        with pytest.raises(VulnerabilityNotFoundError):
            service.curate(admin, "CVE-0000-0000", "aiohttp", "3.7.3", "cleared", "note")
    with container.factory() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "cve.curate").order_by(AuditEvent.seq)
        ).all()
    assert len(events) == 2
    assert events[0].before is None
    assert events[1].before is not None and events[1].before["status"] == "active"
    assert events[1].after is not None and events[1].after["status"] == "cleared"


def test_curation_needs_cve_write(container: Container, admin: Principal, tmp_path: Path) -> None:
    from stockade.auth.principal import ANONYMOUS
    from stockade.core.errors import StockadeError

    _synced(container, admin, tmp_path)
    with transaction(container.factory) as session, pytest.raises(StockadeError):
        CurationService(session).curate(ANONYMOUS, VULN, "aiohttp", "3.7.3", "cleared", "no")


def test_summary_per_artifact(container: Container, admin: Principal, tmp_path: Path) -> None:
    chan = channel_id(container, admin)
    (art,) = add_artifacts(container, chan, [("aiohttp", "3.7.3", "py_0")], match=False)
    _synced(container, admin, tmp_path)
    with container.factory() as session:
        scored = session.execute(
            select(VulnRow.vuln_id, VulnRow.best_score)
            .join(VulnMatch, VulnMatch.vulnerability_id == VulnRow.id)
            .where(VulnMatch.artifact_id == art)
        ).all()
        summary = session.get(ArtifactVulnSummary, art)
    assert summary is not None
    assert summary.counts == {"reported": len(scored)}
    known = [s for _, s in scored if s is not None]
    assert summary.max_score == (max(known) if known else None)
    _curate(container, admin, "active", note="confirmed")
    with container.factory() as session:
        summary = session.get(ArtifactVulnSummary, art)
    assert summary is not None
    assert summary.worst_status == "active"
    assert summary.counts == {"reported": len(scored) - 1, "active": 1}


@pytest.mark.parametrize("kept", [True, False], ids=["kept-on-upload", "read-from-blob"])
def test_security_json_marks_mitigated(
    container: Container, admin: Principal, tmp_path: Path, kept: bool
) -> None:
    """Package reading keeps ``vulns_mitigated``; contents read before that fall back to the blob."""
    _synced(container, admin, tmp_path)
    channel_id(container, admin)
    security = b'{"vulns_mitigated": ["CVE-2021-21330"]}'  # an alias of PYSEC-2021-76
    spec = PackageSpec(
        name="aiohttp",
        version="3.7.3",
        build="patched_0",
        extra_info=(file("info/security.json", security),),
    )
    add_package(container, admin, "internal", build_conda(tmp_path, spec))
    with transaction(container.factory) as session:
        ids = list(session.scalars(select(Artifact.id).where(Artifact.build == "patched_0")))
        sha = session.scalar(select(Artifact.sha256).where(Artifact.build == "patched_0"))
        content = session.get(PackageContent, sha)
        assert content is not None
        assert content.vulns_mitigated == ["CVE-2021-21330"]
        if not kept:  # as recorded before the column existed
            session.execute(
                update(PackageContent)
                .where(PackageContent.sha256 == sha)
                .values(vulns_mitigated=sql_null())
            )
        reader = None if kept else BlobSecurityReader(container.blobs)
        Matcher(session, security=reader).match_artifacts(ids)
        origin = session.scalar(
            select(VulnMatch.status_origin).where(VulnMatch.status == "mitigated")
        )
    found = matches(container)
    assert found[(*KEY, "patched_0")] == "mitigated"
    assert origin == "security-json"
    others = {s for (v, _, _, b), s in found.items() if b == "patched_0" and v != VULN}
    assert others == {"reported"}


def test_db_lookup_answers_the_policy_engine(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    _synced(container, admin, tmp_path)
    lookup = DbVulnerabilityLookup(container.factory)
    first = lookup.version()
    reported = frozenset({"reported", "active"})
    # no artifact exists: answered from the advisories' ranges (upstream records of a mirror)
    with container.factory() as session:
        best = session.scalars(select(VulnRow.best_score).where(VulnRow.withdrawn.is_(None))).all()
    score = lookup.max_score("aiohttp", "3.7.3", reported)
    assert score == max(s for s in best if s is not None) == 7.5  # the withdrawn 5.5 is left out
    assert lookup.has_uncurated("aiohttp", "3.7.3")
    assert lookup.max_score("aiohttp", "99.0", reported) is None
    assert not lookup.has_uncurated("aiohttp", "99.0")
    assert lookup.max_score("numpy", "1.0", reported) is None

    with transaction(container.factory) as session:
        for vuln_id in session.scalars(select(VulnRow.vuln_id).where(VulnRow.withdrawn.is_(None))):
            CurationService(session).curate(admin, vuln_id, "aiohttp", "3.7.3", "cleared", "n/a")
    assert lookup.version() != first
    assert not lookup.has_uncurated("aiohttp", "3.7.3")
    assert lookup.max_score("aiohttp", "3.7.3", reported) is None
    assert lookup.max_score("aiohttp", "3.7.3", frozenset({"cleared"})) == score


def test_db_lookup_counts_artifact_matches(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    chan = channel_id(container, admin)
    add_artifacts(container, chan, [("aiohttp", "3.7.3", "py38_0")], match=False)
    _synced(container, admin, tmp_path)
    lookup = DbVulnerabilityLookup(container.factory)
    lookup.version()
    assert lookup.max_score("aiohttp", "3.7.3", frozenset({"active"})) is None
    scored = "PYSEC-2023-246"  # CVSS 7.5
    _curate(container, admin, "active", builds="py38_*", note="confirmed on py38", vuln=scored)
    lookup.version()  # the revision moved: cached answers are dropped
    active = lookup.max_score("aiohttp", "3.7.3", frozenset({"active"}))
    assert active == 7.5  # the build-specific decision, through the artifact's match


def test_vulns_folder_is_real(testdata: Path) -> None:
    assert testdata / "vulns" == VULNS
