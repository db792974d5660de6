"""Patterns applied to what packages, upstreams and users send stay linear in its length.

An unanchored pattern that starts with a repeated class (``\\s*(?:;|&&…)``, ``[a-z][…]*://``) is
tried from every character of a long run and costs the square of its length: a link script of
20,000 spaces held the scanner for 23 s, a licence of blanks 2.5 s, a settings value 2.3 s. Each
is fed 400,000 characters here; quadratic again, the test's timeout fails it (nothing is timed).
"""

from __future__ import annotations

import pytest

from stockade.cli.config_view import _redact
from stockade.policies.licenses import family_alternatives
from stockade.scanning.scanners.linkscripts import write_targets
from stockade.scanning.scanners.names import _TRAILING_NUMBER

LONG = 400_000


@pytest.mark.parametrize("blank", [" ", "\t"])
def test_a_link_script_line_of_blanks(blank: str) -> None:
    assert list(write_targets(blank * LONG + "x", cmd_dialect=False)) == []
    assert list(write_targets(f"echo hi{blank * LONG}> /etc/passwd", cmd_dialect=False))


def test_a_licence_of_blanks() -> None:
    assert family_alternatives(None, "MIT" + " " * LONG + "x")
    assert family_alternatives(None, "MIT" + "\t" * LONG + "OR BSD")


def test_a_settings_value_of_letters_is_shown_with_its_password_hidden() -> None:
    assert _redact("url", "a" * LONG) == "a" * LONG
    assert _redact("url", "a" * LONG + " https://u:pw@host/") == "a" * LONG + " https://u:***@host/"


def test_a_name_ending_in_a_long_number() -> None:
    assert _TRAILING_NUMBER.search("0" * LONG + "!") is None
    match = _TRAILING_NUMBER.search("requests-2")
    assert match is not None and match.group(0) == "-2"
