"""Pieces of the vulnerability pages that need no server: cursors, ranges, grouping, blurbs."""

from __future__ import annotations

import pytest

from stockade.core.errors import InvalidInputError
from stockade.vulns.display import spell_range
from stockade.web.api.cve_queries import SeverityCursor, best_version, worst_of
from stockade.web.api.cve_schemas import AffectedArtifact
from stockade.web.ui.cve_page import group_artifacts, note_text


@pytest.mark.parametrize(
    ("cursor", "text"),
    [(SeverityCursor(7.5, 12), "7.5_12"), (SeverityCursor(-1.0, 3), "-1.0_3")],
)
def test_cursor_round_trip(cursor: SeverityCursor, text: str) -> None:
    assert cursor.encode() == text
    assert SeverityCursor.decode(text) == cursor


@pytest.mark.parametrize("text", ["", "7.5", "x_1", "7.5_-1", "11.0_1", "nan_1", "7.5_1e3"])
def test_bad_cursors_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInputError):
        SeverityCursor.decode(text)


def test_best_version_prefers_v4_then_v3() -> None:
    assert best_version([{"version": "2.0"}, {"version": "3.0"}, {"version": "3.1"}]) == "3.1"
    assert best_version([{"version": "3.1"}, {"version": "4.0"}]) == "4.0"
    assert best_version([]) is None


def test_worst_status() -> None:
    assert worst_of(["cleared", "reported", "mitigated"]) == "reported"
    assert worst_of(["cleared", "active"]) == "active"
    assert worst_of(["bogus"]) is None


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ({"kind": "ecosystem", "end": "3.7.4"}, "<3.7.4"),
        ({"start": "1.0", "end": "2.0", "end_inclusive": True}, ">=1.0, <=2.0"),
        ({"kind": "semver", "start": "1.0", "start_inclusive": False}, ">1.0 (semver)"),
        ({"kind": "custom", "status": "unaffected"}, "every version (custom): unaffected"),
    ],
)
def test_ranges_are_spelled_as_stated(raw: dict[str, object], text: str) -> None:
    assert spell_range(raw) == text


def _artifact(channel: str, version: str, build: str) -> AffectedArtifact:
    return AffectedArtifact(
        channel=channel,
        subdir="noarch",
        filename=f"p-{version}-{build}.conda",
        name="p",
        version=version,
        build=build,
        status="reported",
        status_origin="auto",
    )


def test_matches_are_grouped_channel_package_version_newest_first() -> None:
    found = [_artifact("b", "1.9", "0"), _artifact("a", "1.10", "0"), _artifact("a", "1.9", "1")]
    found.append(_artifact("a", "1.9", "0"))
    groups = group_artifacts(found)
    assert [g.name for g in groups] == ["a", "b"]
    assert [v.version for v in groups[0].packages[0].versions] == ["1.10", "1.9"]
    assert [b.build for b in groups[0].packages[0].versions[1].builds] == ["1", "0"]
    assert groups[0].artifacts == 3


def test_note_keeps_lines_and_drops_control_characters() -> None:
    assert note_text(" why\r\nbecause\x00 \x07so \n") == "why\nbecause so"
