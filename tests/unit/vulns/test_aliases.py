"""Alias groups computed from records' ids and aliases (``vulns.aliases``), no database."""

from __future__ import annotations

from stockade.vulns.aliases import Member, group_members, ids_of, merged_aliases


def member(
    row_id: int, vuln_id: str, *aliases: str, score: float | None = None, withdrawn: bool = False
) -> Member:
    return Member(row_id, vuln_id, ids_of(vuln_id, aliases), score, withdrawn)


def test_a_pysec_record_takes_the_score_of_the_cve_it_aliases() -> None:
    found = group_members(
        [
            member(1, "PYSEC-2018-66", "CVE-2018-1000656", "GHSA-562c-5r94-xh97"),
            member(2, "CVE-2018-1000656", score=7.5),
            member(3, "PYSEC-2099-1"),
        ]
    )
    assert found[1] == found[2]
    assert found[1].columns() == {
        "alias_group": "PYSEC-2018-66",
        "group_score": 7.5,
        "group_severity": "high",
        "score_source": "CVE-2018-1000656",
    }
    assert found[3].columns() == {
        "alias_group": "PYSEC-2099-1",
        "group_score": None,
        "group_severity": None,
        "score_source": None,
    }


def test_records_sharing_an_alias_that_is_not_stored_are_one_group() -> None:
    found = group_members(
        [member(1, "PYSEC-2021-76", "CVE-2021-21330"), member(2, "GHSA-v6wp", "cve-2021-21330")]
    )
    assert found[1] == found[2] and found[1].alias_group == "GHSA-v6wp"  # smallest non-CVE id


def test_the_highest_score_wins_and_a_tie_goes_to_the_cve_record() -> None:
    found = group_members(
        [
            member(1, "GHSA-x", "CVE-1", score=9.8),
            member(2, "CVE-1", score=7.5),
            member(3, "PYSEC-1", "CVE-1", score=9.8),
        ]
    )
    assert (found[1].group_score, found[1].score_source) == (9.8, "GHSA-x")
    tie = group_members([member(1, "PYSEC-1", "CVE-1", score=5.0), member(2, "CVE-1", score=5.0)])
    assert tie[1].score_source == "CVE-1"


def test_a_withdrawn_record_stands_alone() -> None:
    found = group_members(
        [member(1, "PYSEC-1", "CVE-1"), member(2, "GHSA-1", "CVE-1", score=9.9, withdrawn=True)]
    )
    assert found[1].alias_group == "PYSEC-1" and found[1].group_score is None
    assert found[2].alias_group == "GHSA-1" and found[2].group_score == 9.9


def test_merged_aliases_keep_the_feeds_spelling_without_the_own_id() -> None:
    spelled = ["PYSEC-2018-66", "CVE-2018-1000656", "GHSA-562c-5r94-xh97", "cve-2018-1000656"]
    assert merged_aliases("CVE-2018-1000656", [], spelled) == [
        "PYSEC-2018-66",
        "GHSA-562c-5r94-xh97",
    ]
