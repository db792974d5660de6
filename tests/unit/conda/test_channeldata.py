"""Tests of stockade.conda.channeldata: channeldata.json, run_exports.json, notices.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rattler

from stockade.conda.channeldata import (
    ChannelPackageSummary,
    ChannelRecord,
    Notice,
    NoticeLevel,
    build_channeldata_json,
    build_notices_json,
    build_run_exports_json,
    summarize_packages,
    to_seconds,
)
from tests.conftest import TESTDATA

HOTFIX = TESTDATA / "channels" / "index-hotfix"


def _json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _rattler_version(version: str) -> rattler.Version:
    return rattler.Version(version)


# --- run_exports.json ----------------------------------------------------------------------


def test_run_exports_json_cep12_shape() -> None:
    weak = {"weak": ["libfoo >=1.2,<2"], "strong_constrains": ["bar"]}
    doc = json.loads(
        build_run_exports_json(
            "linux-64",
            [("foo-1.2-0.tar.bz2", weak), ("bar-1-0.tar.bz2", None)],
            [("foo-1.2-0.conda", weak), ("baz-1-0.conda", {})],
        )
    )
    assert doc == {
        "info": {"subdir": "linux-64", "version": 1},
        "packages": {
            "bar-1-0.tar.bz2": {"run_exports": {}},
            "foo-1.2-0.tar.bz2": {"run_exports": weak},
        },
        "packages.conda": {
            "baz-1-0.conda": {"run_exports": {}},
            "foo-1.2-0.conda": {"run_exports": weak},
        },
    }


def test_run_exports_json_empty_subdir() -> None:
    doc = json.loads(build_run_exports_json("noarch", [], []))
    assert doc == {
        "info": {"subdir": "noarch", "version": 1},
        "packages": {},
        "packages.conda": {},
    }


# --- channeldata.json ----------------------------------------------------------------------


def test_channeldata_of_the_conda_index_hotfix_channel() -> None:
    """Rebuild conda-index's channeldata.json from the channel's repodata (nulls are omitted,
    as current conda-index writes them)."""
    expected = _json(HOTFIX / "channeldata.json")
    records = [
        ChannelRecord(subdir=subdir, record=record)
        for subdir in ("noarch", "osx-64")
        for record in _json(HOTFIX / subdir / "repodata.json")["packages"].values()
    ]

    summaries = summarize_packages(records, version_key=_rattler_version)
    built = json.loads(build_channeldata_json(summaries, ["osx-64", "noarch"]))

    assert built["channeldata_version"] == 1
    assert built["subdirs"] == expected["subdirs"] == ["noarch", "osx-64"]
    assert set(built["packages"]) == set(expected["packages"])
    for name, entry in expected["packages"].items():
        assert built["packages"][name] == {k: v for k, v in entry.items() if v is not None}


def _record(version: str, timestamp: int, **extra: Any) -> dict[str, Any]:
    return {"name": "foo", "version": version, "timestamp": timestamp, **extra}


def test_summary_takes_the_newest_version_and_keeps_older_about_fields() -> None:
    records = [
        ChannelRecord(
            "linux-64",
            _record("1.10", 1_700_000_000_000, license="MIT"),
            about={"summary": "new", "home": "https://foo"},
            run_exports={"weak": ["foo >=1.10"]},
        ),
        ChannelRecord(
            "osx-64",
            _record("1.9", 1_800_000_000_000, license="BSD"),
            about={"summary": "old", "description": "kept", "doc_url": "https://d"},
            run_exports={"weak": ["foo >=1.9"]},
            flags=frozenset({"post_link", "not-a-flag"}),
        ),
        ChannelRecord(
            "noarch",
            _record("1.10", 1_600_000_000_000),
            about={"summary": "older build"},
        ),
    ]

    (summary,) = summarize_packages(records, version_key=_rattler_version)
    entry = summary.to_json()

    assert entry["version"] == "1.10"  # version order, not string order
    assert entry["summary"] == "new"
    assert entry["license"] == "MIT"  # from the (patched) record
    assert entry["description"] == "kept"  # newer versions lack it: the older value stays
    assert entry["doc_url"] == "https://d"
    assert entry["subdirs"] == ["linux-64", "noarch", "osx-64"]
    assert entry["timestamp"] == 1_800_000_000  # the newest timestamp, in seconds
    assert entry["run_exports"] == {
        "1.9": {"weak": ["foo >=1.9"]},
        "1.10": {"weak": ["foo >=1.10"]},
    }
    assert entry["post_link"] is True
    assert entry["pre_link"] is False
    assert "not-a-flag" not in entry
    assert "icon_url" not in entry


def test_newest_build_without_run_exports_clears_its_version() -> None:
    records = [
        ChannelRecord("linux-64", _record("1.0", 1), run_exports={"weak": ["foo"]}),
        ChannelRecord("linux-64", _record("1.0", 2), run_exports=None),
    ]
    (summary,) = summarize_packages(records, version_key=_rattler_version)
    assert summary.run_exports == {}


def test_channeldata_sorted_and_compact() -> None:
    packages = [
        ChannelPackageSummary(name="zeta", version="2", subdirs=["noarch"], timestamp=5),
        ChannelPackageSummary(
            name="alpha", version="1", subdirs=["linux-64", "linux-64"], home="h"
        ),
    ]
    raw = build_channeldata_json(packages, ["noarch", "linux-64", "noarch"])
    doc = json.loads(raw)
    assert list(doc["packages"]) == ["alpha", "zeta"]
    assert doc["packages"]["alpha"]["subdirs"] == ["linux-64"]
    assert doc["packages"]["alpha"]["home"] == "h"
    assert doc["packages"]["alpha"]["timestamp"] == 0
    assert doc["subdirs"] == ["linux-64", "noarch"]
    assert b" " not in raw


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 0),
        (0, 0),
        (1652966521, 1652966521),
        (1652966521286, 1652966521),
        (12.7, 12),
    ],
)
def test_to_seconds(value: float | None, seconds: int) -> None:
    assert to_seconds(value) == seconds


# --- notices.json --------------------------------------------------------------------------


def test_notices_json_as_conda_reads_it() -> None:
    created = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    notices = [
        Notice(
            id="maintenance",
            message="Read-only on Sunday",
            level=NoticeLevel.WARNING,
            created_at=created,
            expired_at=created + timedelta(days=7),
            interval=86400,
        ),
        Notice(
            id="new",
            message="Hello",
            level=NoticeLevel.INFO,
            created_at=created + timedelta(days=1),
        ),
    ]

    doc = json.loads(build_notices_json(notices))

    assert [n["id"] for n in doc["notices"]] == ["new", "maintenance"]  # newest first
    assert doc["notices"][1] == {
        "id": "maintenance",
        "message": "Read-only on Sunday",
        "level": "warning",
        "created_at": "2024-03-01T08:00:00+00:00",
        "expired_at": "2024-03-08T08:00:00+00:00",
        "interval": 86400,
    }
    assert doc["notices"][0] == {
        "id": "new",
        "message": "Hello",
        "level": "info",
        "created_at": "2024-03-02T08:00:00+00:00",
    }
    # conda parses timestamps with datetime.fromisoformat and compares with an aware "now"
    expired_at = datetime.fromisoformat(doc["notices"][1]["expired_at"])
    assert expired_at > datetime(2024, 3, 7, tzinfo=UTC)


def test_notice_levels_and_empty_document() -> None:
    assert [level.value for level in NoticeLevel] == ["info", "warning", "critical"]
    assert json.loads(build_notices_json([])) == {"notices": []}


def test_notices_need_aware_times() -> None:
    naive = Notice(id="x", message="m", level=NoticeLevel.CRITICAL, created_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        build_notices_json([naive])
