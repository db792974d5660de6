"""channeldata.json is built around bad stored records (issue 11 item 8): before, one record with
a version rattler cannot read (or no name, or a record that is not JSON) failed the whole
channel's channeldata.json on every rebuild."""

from __future__ import annotations

import orjson
import pytest
from rattler import Version

from stockade.conda.channeldata import (
    ChannelRecord,
    build_channeldata_json,
    channel_record,
    summarize_packages,
    to_seconds,
)

GOOD = {"name": "demo", "version": "1.0", "timestamp": 1_700_000_000_000, "license": "MIT"}


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "demo", "version": "1..2"},
        {"name": "demo", "version": 5},
        {"version": "2.0"},
        {"name": ["demo"], "version": "2.0"},
        {"name": "", "version": "2.0"},
    ],
)
def test_a_bad_record_is_left_out_and_said(bad: dict[str, object]) -> None:
    skipped: list[str] = []
    records = [ChannelRecord("noarch", GOOD), ChannelRecord("noarch", bad)]
    summaries = summarize_packages(records, version_key=Version, skipped=skipped)
    assert [(s.name, s.version) for s in summaries] == [("demo", "1.0")]
    assert len(skipped) == 1 and "noarch" in skipped[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [("license", {}), ("summary", ["x"]), ("tags", "not-a-list"), ("home", 5), ("tags", [1])],
)
def test_about_values_of_a_stray_type_are_left_out(key: str, value: object) -> None:
    records = [ChannelRecord("noarch", GOOD | {key: value}, about={key: value})]
    entry = orjson.loads(
        build_channeldata_json(summarize_packages(records, version_key=Version), [])
    )
    assert key not in entry["packages"]["demo"]


@pytest.mark.parametrize("timestamp", [1e40, -5, "now", True, 10**30])
def test_bad_timestamps_count_as_none(timestamp: object) -> None:
    assert to_seconds(timestamp) == 0
    records = [ChannelRecord("noarch", GOOD | {"timestamp": timestamp})]
    assert build_channeldata_json(summarize_packages(records, version_key=Version), [])


def test_stored_bytes_that_are_not_an_object() -> None:
    assert channel_record("noarch", b"{not json", None, None) is None
    assert channel_record("noarch", b"[1]", None, None) is None
    record = channel_record("noarch", orjson.dumps(GOOD), {"summary": "s"}, {})
    assert record is not None and record.run_exports is None and record.about == {"summary": "s"}
