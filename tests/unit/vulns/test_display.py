"""An advisory's one-line text: the summary, else the start of the details (OSV PyPI records)."""

from __future__ import annotations

import pytest
import yaml

from stockade.vulns.display import SUMMARY_LIMIT, display_summary, product_name
from tests.conftest import TESTDATA


def test_the_summary_wins_on_one_line() -> None:
    assert display_summary("  Open\nredirect  ", "long details") == "Open redirect"


def test_no_summary_gives_the_start_of_the_details_of_a_real_record() -> None:
    record = yaml.safe_load((TESTDATA / "vulns/osv-pypi/aiohttp/PYSEC-2021-76.yaml").read_text())
    assert "summary" not in record
    text = display_summary(record.get("summary"), record["details"])
    assert text.startswith("aiohttp is an asynchronous HTTP client/server framework")
    assert len(text) <= SUMMARY_LIMIT and text.endswith("…") and "\n" not in text
    assert text[:-1] == text[:-1].rstrip() and record["details"].split()[0] in text
    assert not text[:-1].endswith("aiohttp-base")  # cut after a whole word, never inside one


@pytest.mark.parametrize(("summary", "details"), [("", ""), (None, None), ("  ", "\n")])
def test_nothing_to_show_is_empty(summary: str | None, details: str | None) -> None:
    assert display_summary(summary, details) == ""


def test_a_short_limit_cuts_after_a_word() -> None:
    assert display_summary("", "one two three four five", limit=12) == "one two…"


def test_product_names() -> None:
    assert product_name({"ecosystem": "PyPI", "name": "aiohttp"}) == "PyPI aiohttp"
    assert product_name({"vendor": "aiohttp", "product": "aiohttp"}) == "aiohttp:aiohttp"
    assert product_name({"purl": "pkg:pypi/x"}) == "pkg:pypi/x"
    assert product_name({}) == "(unnamed product)"
