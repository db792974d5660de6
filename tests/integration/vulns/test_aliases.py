"""Records that alias each other are one vulnerability (issue 12, item 8), with the real records:
OSV PyPI ``PYSEC-…`` advisories and the NVD records of the CVEs they alias
(``nvd-api-2.0/cves-pypi-aliases.json``: CVE-2018-1000656, CVE-2019-10906, CVE-2021-21330)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.policies.engine import EvaluationContext, evaluate
from stockade.policies.model import CveScore, Policy
from stockade.settings import WebhookSettings
from stockade.vulns.advisory_queries import (
    VulnFilters,
    curation_history,
    list_vulnerabilities,
    show_vulnerability,
)
from stockade.vulns.curation import CurationService
from stockade.vulns.lookup import DbVulnerabilityLookup
from stockade.vulns.models import ArtifactVulnSummary
from stockade.vulns.package_vulns import package_vulnerabilities
from stockade.vulns.reports import channel_report, matches_of
from stockade.vulns.severity_list import list_most_severe
from tests.integration.vulns.support import (
    VULNS,
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)
from tests.integration.vulns.test_webhooks import add_hook, deliveries

NVD = VULNS / "nvd-api-2.0" / "cves-pypi-aliases.json"
GROUPS = {  # PYSEC advisory -> (the CVE it aliases, the NVD score, the conda package)
    "PYSEC-2018-66": ("CVE-2018-1000656", 7.5, "flask"),
    "PYSEC-2019-217": ("CVE-2019-10906", 8.6, "jinja2"),
    "PYSEC-2021-76": ("CVE-2021-21330", 6.1, "aiohttp"),
}
FLASK = ("flask", "0.12.2", "py_0")  # below 0.12.3: PYSEC-2018-66 and CVE-2018-1000656 match


def _feeds(container: Container, admin: Principal, tmp_path: Path, *, nvd_first: bool) -> None:
    folder = osv_folder(tmp_path, "flask", "jinja2", "aiohttp")
    feeds = [("nvd", NVD.as_uri(), "nvd"), ("pypa", folder.as_uri(), "osv")]
    for name, url, fmt in feeds if nvd_first else feeds[::-1]:
        sync(container, add_feed(container, admin, name, url, fmt))


@pytest.mark.parametrize("nvd_first", [True, False], ids=["nvd-first", "osv-first"])
def test_pysec_takes_the_score_of_its_cve(
    container: Container, admin: Principal, tmp_path: Path, nvd_first: bool
) -> None:
    _feeds(container, admin, tmp_path, nvd_first=nvd_first)
    with container.read_factory() as session:
        for pysec, (cve, score, _) in GROUPS.items():
            shown = show_vulnerability(session, admin, pysec)
            assert not shown.scores  # OSV PyPI records carry no CVSS of their own
            assert shown.best_score == score  # it was unscored
            assert shown.score_source == cve
            assert shown.severity == ("high" if score >= 7 else "medium")
            assert cve in shown.aliases and sorted(shown.group) == [cve, pysec]
            by_cve = show_vulnerability(session, admin, cve)  # the NVD record itself
            assert (by_cve.best_score, by_cve.score_source) == (score, cve)
            assert pysec in by_cve.aliases


def test_lists_and_severity_filters_show_a_group_once(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    _feeds(container, admin, tmp_path, nvd_first=True)
    with container.read_factory() as session:
        every, _ = list_vulnerabilities(session, admin, VulnFilters(), after=0, limit=500)
        ids = {v.id for v in every}
        assert set(GROUPS) <= ids and not {cve for cve, *_ in GROUPS.values()} & ids
        high, _ = list_vulnerabilities(
            session, admin, VulnFilters(severity=["high"]), after=0, limit=500
        )
        by_id = {v.id: v for v in high}  # (some PYSEC records carry a CVSS vector of their own)
        assert {"PYSEC-2018-66", "PYSEC-2019-217"} <= set(by_id)
        assert not {v for v in by_id if v.startswith("CVE-")}
        assert by_id["PYSEC-2019-217"].score_source == "CVE-2019-10906"
        assert "PYSEC-2021-76" not in by_id  # 6.1: medium
        found, _ = list_vulnerabilities(
            session, admin, VulnFilters(q="CVE-2021-21330"), after=0, limit=500
        )
        assert [v.id for v in found] == ["PYSEC-2021-76"]


def test_an_artifact_matched_by_both_counts_once(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    chan = channel_id(container, admin)
    (flask,) = add_artifacts(container, chan, [FLASK], match=False)
    _feeds(container, admin, tmp_path, nvd_first=False)
    matched = {v for (v, name, *_), _ in matches(container).items() if name == "flask"}
    assert {"PYSEC-2018-66", "CVE-2018-1000656"} <= matched  # two records, one vulnerability
    groups = len(matched) - 1
    with container.read_factory() as session:
        summary = session.get(ArtifactVulnSummary, flask)
        assert summary is not None
        assert summary.counts == {"reported": groups} and summary.max_score == 7.5
        listed = package_vulnerabilities(session, admin, "internal", "flask")
        assert len(listed) == groups
        pysec = next(v for v in listed if v.vuln_id == "PYSEC-2018-66")
        assert (pysec.best_score, pysec.best_version) == (7.5, "3.0")
        (found,) = matches_of(session, [flask]).values()  # environment and package reports
        assert len(found) == groups
        channel = session.scalar(select(Channel).where(Channel.name == "internal"))
        assert channel is not None
        report = channel_report(session, channel)
        assert len(report.rows) == groups and report.by_status == {"reported": groups}
        row = next(r for r in report.rows if r["vuln_id"] == "PYSEC-2018-66")
        assert (row["score"], row["score_source"]) == (7.5, "CVE-2018-1000656")
        page, _ = list_most_severe(
            session, admin, VulnFilters(package="flask"), after=None, limit=50
        )
        top = next(r for r in page if r.summary.id == "PYSEC-2018-66")
        assert top.stats.artifacts == 1 and top.best_version == "3.0"


def test_curating_the_cve_decides_the_pysec_match(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    chan = channel_id(container, admin)
    (flask,) = add_artifacts(container, chan, [FLASK], match=False)
    _feeds(container, admin, tmp_path, nvd_first=True)
    with transaction(container.factory) as session:
        CurationService(session).curate(
            admin, "CVE-2018-1000656", *FLASK[:2], "cleared", "JSON bodies are not decoded here"
        )
    found = matches(container)
    assert found[("CVE-2018-1000656", *FLASK)] == "cleared"
    assert found[("PYSEC-2018-66", *FLASK)] == "cleared"
    with container.read_factory() as session:
        history = curation_history(session, admin, "PYSEC-2018-66")
        assert [(c.vulnerability, c.status) for c in history] == [("CVE-2018-1000656", "cleared")]
        summary = session.get(ArtifactVulnSummary, flask)
        assert summary is not None and summary.counts.get("cleared") == 1


def test_cve_score_policy_excludes_the_flask_build(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """Confirmed (``active``) vulnerabilities above 7 block a build: the PYSEC advisory a curator
    confirmed is scored by its CVE."""
    _feeds(container, admin, tmp_path, nvd_first=False)
    with transaction(container.factory) as session:
        CurationService(session).curate(
            admin, "PYSEC-2018-66", *FLASK[:2], "active", "the JSON decoder is reachable"
        )
    policy = Policy(name="confirmed", cve_score=CveScore(7.0, ">=", frozenset({"active"})))
    lookup = DbVulnerabilityLookup(container.factory)
    lookup.version()
    context = EvaluationContext(now=datetime(2024, 6, 1, tzinfo=UTC), vulnerabilities=lookup)
    records = {
        f"flask-{v}-py_0.conda": {
            "name": "flask",
            "version": v,
            "build": "py_0",
            "build_number": 0,
            "depends": [],
            "subdir": "noarch",
        }
        for v in ("0.12.2", "3.0.0")
    }
    result = evaluate([policy], records, subdir="noarch", context=context)
    assert result.kept == {"flask-3.0.0-py_0.conda"}
    assert lookup.max_score("flask", "0.12.2", frozenset({"active"})) == 7.5


def test_webhooks_announce_a_group_once(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """The NVD record of a CVE already announced through its PYSEC advisory is no new match;
    confirming the group announces one activation, under the group's primary id."""
    chan = channel_id(container, admin)
    add_artifacts(container, chan, [FLASK], match=False)
    container.settings.webhooks = WebhookSettings(allow_loopback=True)  # never called here
    add_hook(container, admin, "internal", events=["vulnerability.matched", "vulnerability.active"])
    folder = osv_folder(tmp_path, "flask")
    sync(container, add_feed(container, admin, "pypa", folder.as_uri(), "osv"))
    announced = [d.payload["vulnerability"]["id"] for d in deliveries(container)]
    assert "PYSEC-2018-66" in announced
    sync(container, add_feed(container, admin, "nvd", NVD.as_uri(), "nvd"))
    after = deliveries(container)
    assert [d.payload["vulnerability"]["id"] for d in after] == announced  # nothing new
    with transaction(container.factory) as session:
        CurationService(session).curate(
            admin, "CVE-2018-1000656", *FLASK[:2], "active", "the JSON decoder is reachable"
        )
    (active,) = [d for d in deliveries(container) if d.event == "vulnerability.active"]
    vuln = active.payload["vulnerability"]
    assert (vuln["id"], vuln["score"], vuln["score_source"]) == (
        "PYSEC-2018-66",
        7.5,
        "CVE-2018-1000656",
    )
    assert "CVE-2018-1000656" in vuln["aliases"] and len(active.payload["artifacts"]) == 1
