"""CVSS scoring from vectors and SPEC §7 severity bands."""

from __future__ import annotations

import pytest

from stockade.core.errors import InvalidInputError
from stockade.vulns.cvss import base_score, score_vector, severity_band, vector_version
from stockade.vulns.errors import InvalidVectorError
from stockade.vulns.model import CvssVersion, Score, Severity, Vulnerability


@pytest.mark.parametrize(
    ("vector", "version", "score"),
    [
        ("AV:N/AC:L/Au:N/C:C/I:C/A:C", CvssVersion.V2, 10.0),
        ("(AV:N/AC:M/Au:N/C:N/I:P/A:N)", CvssVersion.V2, 4.3),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", CvssVersion.V3_0, 8.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", CvssVersion.V3_1, 9.8),
        ("CVSS:3.1/AV:A/AC:L/PR:L/UI:R/S:U/C:H/I:N/A:N", CvssVersion.V3_1, 5.2),
        ("CVSS:4.0/AV:A/AC:L/AT:P/PR:L/UI:P/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", CvssVersion.V4, 4.1),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", CvssVersion.V3_1, 0.0),
    ],
)
def test_base_score_from_vector(vector: str, version: CvssVersion, score: float) -> None:
    assert vector_version(vector) is version
    assert base_score(vector) == score
    assert score_vector(vector, source="nvd@nist.gov").base_score == score


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, Severity.NONE),
        (0.1, Severity.LOW),
        (3.9, Severity.LOW),
        (4.0, Severity.MEDIUM),
        (6.9, Severity.MEDIUM),
        (7.0, Severity.HIGH),
        (8.9, Severity.HIGH),
        (9.0, Severity.CRITICAL),
        (10.0, Severity.CRITICAL),
    ],
)
def test_severity_bands(score: float, band: Severity) -> None:
    assert severity_band(score) is band


def test_severity_band_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"between 0\.0 and 10\.0"):
        severity_band(10.5)


@pytest.mark.parametrize(
    ("vector", "reason"),
    [
        ("", "not a CVSS vector"),
        ("garbage", "not a CVSS vector"),
        ("CVSS:5.0/AV:N", "unknown CVSS version"),
        ("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 'Unknown value "X"'),
        ("CVSS:3.1/AV:N/AC:L", "Missing mandatory"),
        ("AV:Q/AC:L/Au:N/C:C/I:C/A:C", 'Unknown value "Q"'),
        ("CVSS:4.0/AV:Q", "CVSS4"),
    ],
)
def test_bad_vector_is_a_domain_error_naming_the_vector(vector: str, reason: str) -> None:
    with pytest.raises(InvalidVectorError) as caught:
        base_score(vector)
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.code == "vulns:bad-vector"
    assert repr(vector) in caught.value.detail
    assert reason.lower() in caught.value.detail.lower()


def test_stated_version_must_agree_with_the_vector() -> None:
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert base_score(vector, "3.1") == 9.8
    assert base_score(vector, "3") == 9.8  # OSV's CVSS_V3 covers 3.0 and 3.1
    with pytest.raises(InvalidVectorError, match=r"stated as CVSS 3\.0"):
        base_score(vector, "3.0")
    with pytest.raises(InvalidVectorError, match="unknown CVSS version"):
        base_score(vector, "7")


def _score(version: CvssVersion, value: float) -> Score:
    return Score(version=version, vector=f"v{version}", base_score=value)


def test_best_score_prefers_v4_then_v3_1_then_v3_0_then_v2() -> None:
    v2, v30, v31, v4 = (
        _score(CvssVersion.V2, 10.0),
        _score(CvssVersion.V3_0, 5.0),
        _score(CvssVersion.V3_1, 7.5),
        _score(CvssVersion.V4, 2.0),
    )
    assert Vulnerability("X", "osv", scores=(v2, v30, v31, v4)).best_score() is v4
    assert Vulnerability("X", "osv", scores=(v2, v30, v31)).best_score() is v31
    assert Vulnerability("X", "osv", scores=(v2, v30)).best_score() is v30
    only_v2 = Vulnerability("X", "osv", scores=(v2,))
    assert only_v2.best_score() is v2
    assert only_v2.severity is Severity.CRITICAL  # SPEC bands, not NVD's v2 "HIGH"
    assert Vulnerability("X", "osv").best_score() is None
    assert Vulnerability("X", "osv").severity is None


def test_severity_rank_orders_bands() -> None:
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]
    assert Severity.CRITICAL.rank > Severity.HIGH.rank
