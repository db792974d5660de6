"""The stored JSON shape of advisories round-trips every parsed record of the test data."""

from __future__ import annotations

from stockade.vulns.feeds import parse_cve5, parse_nvd, parse_osv
from stockade.vulns.matcher import summary_row
from stockade.vulns.serial import digest, record_fields, vulnerability_from_fields
from tests.unit.vulns.feeddata import CVE5, NVD_PAGES, OSV_GITHUB, OSV_PYPI


def test_round_trip_of_every_record() -> None:
    records = [v for p in OSV_PYPI[:200] for v in parse_osv(p.read_bytes())]
    records += [v for p in OSV_GITHUB for v in parse_osv(p.read_bytes())]
    records += [v for p in NVD_PAGES for v in parse_nvd(p.read_bytes())]
    records += [v for p in CVE5 for v in parse_cve5(p.read_bytes())]
    assert len(records) > 600
    for vuln in records:
        fields = record_fields(vuln)
        assert vulnerability_from_fields(fields) == vuln, vuln.id
        assert digest(fields) == digest(record_fields(vulnerability_from_fields(fields)))


def test_digest_changes_with_content() -> None:
    (vuln,) = parse_cve5(CVE5[0].read_bytes())
    fields = record_fields(vuln)
    assert digest(fields) != digest({**fields, "summary": fields["summary"] + "!"})


def test_summary_row() -> None:
    row = summary_row(7, [("reported", 5.3), ("cleared", 9.8), ("active", 7.5), ("reported", None)])
    assert row["max_score"] == 7.5  # cleared scores do not count
    assert row["severity"] == "high"
    assert row["worst_status"] == "active"
    assert row["counts"] == {"reported": 2, "cleared": 1, "active": 1}
    only_cleared = summary_row(8, [("cleared", 9.8)])
    assert (only_cleared["max_score"], only_cleared["worst_status"]) == (None, "cleared")
