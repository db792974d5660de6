"""The crash-test hook: ``STOCKADE_TEST_CRASH_AT=POINT[@N]`` ends the process at that point."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stockade.core.faults import EXIT_CODE, _parse

SCRIPT = """
from stockade.core.faults import crash_point
for name in ("a", "b", "b", "b"):
    crash_point(name)
    print(name, flush=True)
"""


def _run(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STOCKADE_TEST_CRASH_AT"}
    if value is not None:
        env["STOCKADE_TEST_CRASH_AT"] = value
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("", None), ("  ", None), ("b", ("b", 1)), ("b@3", ("b", 3)), ("b@0", ("b", 1))],
)
def test_parse(value: str, parsed: tuple[str, int] | None) -> None:
    assert _parse(value) == parsed


def test_unset_never_crashes() -> None:
    result = _run(None)
    assert result.returncode == 0
    assert result.stdout.split() == ["a", "b", "b", "b"]


def test_crashes_at_the_named_point_and_hit() -> None:
    first = _run("b")
    assert first.returncode == EXIT_CODE
    assert first.stdout.split() == ["a"]
    second = _run("b@2")
    assert second.returncode == EXIT_CODE
    assert second.stdout.split() == ["a", "b"]


def test_other_points_do_not_crash() -> None:
    assert _run("c").returncode == 0
