"""Reading summaries from ``channeldata.json`` and ``about.json`` (issue 12, item 13): real files
read, hostile ones give nothing rather than an error."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stockade.mirroring.source_config import SourceConfig
from stockade.mirroring.summaries import (
    SUMMARY_MAX,
    About,
    about_of,
    fetch_channeldata,
    parse_channeldata,
)


def test_real_channeldata_with_null_summaries(testdata: Path) -> None:
    """conda-index's own channeldata.json (every about field null): nothing to take."""
    raw = (testdata / "channels" / "index-hotfix" / "channeldata.json").read_bytes()
    assert orjson.loads(raw)["packages"]  # it has packages
    assert parse_channeldata(raw) == {}


def test_channeldata_entries() -> None:
    raw = orjson.dumps(
        {
            "channeldata_version": 1,
            "packages": {
                "flask": {"summary": " A microframework \n", "license": "BSD", "home": "x"},
                "nolicense": {"summary": "Just a summary", "license": None},
                "empty": {"summary": "", "license": "   "},
                "odd": {"summary": ["not", "a", "string"], "license": 3},
                "long": {"summary": "x" * (SUMMARY_MAX + 10)},
                "notadict": "summary",
            },
        }
    )
    found = parse_channeldata(raw)
    assert found["flask"] == About("A microframework", "BSD")
    assert found["nolicense"] == About("Just a summary", None)
    assert found["long"].summary == "x" * SUMMARY_MAX
    assert set(found) == {"flask", "nolicense", "long"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'{"packages": []}', b'{"packages": null}', b"\xff\xfe"],
)
def test_what_is_not_channeldata_gives_nothing(raw: bytes) -> None:
    assert parse_channeldata(raw) == {}


def test_about_of() -> None:
    assert about_of({"summary": "S", "license": "MIT"}) == About("S", "MIT")
    assert about_of({}) is None
    assert about_of(None) is None
    assert about_of(["summary"]) is None


def test_channeldata_of_a_folder(testdata: Path, tmp_path: Path) -> None:
    hotfix = testdata / "channels" / "index-hotfix"
    raw = fetch_channeldata(SourceConfig(hotfix.resolve().as_uri()))
    assert raw == (hotfix / "channeldata.json").read_bytes()
    assert fetch_channeldata(SourceConfig(tmp_path.as_uri())) is None  # none there
