"""The pieces of a search that need no database: pg_trgm's similarity, filters, the text."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stockade.search.backends import FUZZY_MIN, edits, scored, similarity, trigrams
from stockade.search.errors import SearchFilterError, SearchQueryError
from stockade.search.query import MAX_VALUES, SearchFilters, clean_text, parse_filters
from stockade.vulns.model import Severity


def test_similarity_is_pg_trgms() -> None:
    # SELECT similarity('aiohtp', 'aiohttp') on PostgreSQL 15 with pg_trgm 1.6: 0.6666667
    assert similarity("aiohtp", "aiohttp") == pytest.approx(2 / 3)
    assert trigrams("Ab-c") == {"  a", " ab", "ab ", "  c", " c "}
    assert similarity("numpy", "numpy") == 1.0 and similarity("", "x") == 0.0


def test_typos_of_real_names_score_above_the_bar_and_unrelated_names_below() -> None:
    names = ["aiohttp", "aiosignal", "requests", "xtensor-io", "flask", "r-ggplot2"]
    assert list(scored("aiohtp", names)) == ["aiohttp"]
    assert list(scored("reqeusts", names)) == ["requests"]
    assert list(scored("r-gplot2", names)) == ["r-ggplot2"]
    assert all(s >= FUZZY_MIN for s in scored("xtensr-io", names).values())
    assert list(scored("flaks", names)) == ["flask"]  # a swap: trigrams alone miss it
    assert scored("aoi", names) == {}  # too short to guess
    assert edits("reqeusts", "requests", 2) == 1 and edits("abc", "xyz", 1) == 2


def test_filters_refuse_unknown_values_naming_the_field() -> None:
    parsed = parse_filters(severities=["HIGH", "none"], verdicts=["clean"], subdirs=[" noarch "])
    assert parsed.severities == (Severity.HIGH, Severity.NONE) and parsed.subdirs == ("noarch",)
    calls: dict[str, Callable[[], SearchFilters]] = {
        "severity": lambda: parse_filters(severities=["catastrophic"]),
        "scan": lambda: parse_filters(verdicts=["fine"]),
        "signature": lambda: parse_filters(signatures=["maybe"]),
    }
    for field, call in calls.items():
        with pytest.raises(SearchFilterError) as bad:
            call()
        assert bad.value.extra["field"] == field and bad.value.code == "search:bad-filter"
    with pytest.raises(SearchFilterError):
        parse_filters(subdirs=[f"s{i}" for i in range(MAX_VALUES + 1)])
    with pytest.raises(SearchFilterError):
        parse_filters(licenses=["MIT\x00"])
    assert parse_filters(channels=["", "  "]).empty


def test_text_is_printable_lower_case_and_bounded() -> None:
    assert clean_text("  AioHTTP\x00\n") == "aiohttp"
    assert clean_text(None) == ""
    with pytest.raises(SearchQueryError):
        clean_text("x" * 257)
