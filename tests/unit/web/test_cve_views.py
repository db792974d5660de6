"""Pieces of the vulnerability pages that need no server: ranges, grouping, notes."""

from __future__ import annotations

import pytest

from stockade.vulns.advisory_views import AffectedArtifact
from stockade.vulns.display import spell_range
from stockade.web.ui.cve_page import group_artifacts, note_text


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
