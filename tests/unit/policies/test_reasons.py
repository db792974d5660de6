"""Reason texts name what failed, never what was allowed (issue 11: "gpl2 and gpl3 not allowed"
under ``--licenses-not gpl3,agpl``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stockade.core.errors import InvalidInputError
from stockade.policies import licenses as lic
from stockade.policies.engine import EvaluationContext, evaluate
from stockade.policies.model import Policy, SetMode
from stockade.policies.service import parse_definition, parse_new_definition

CTX = EvaluationContext(now=datetime(2024, 6, 1, tzinfo=UTC))


def _reasons(policy: Policy, **record: Any) -> list[str]:
    rec = {"name": "x", "version": "1", "build": "0", "build_number": 0, "depends": [], **record}
    ev = evaluate([policy], {"x-1-0.conda": rec}, subdir="linux-64", context=CTX)
    return [r.detail for r in ev.excluded.get("x-1-0.conda", [])]


@pytest.mark.parametrize(
    ("licence", "expected"),
    [
        ("GPL-2.0-only AND GPL-3.0-only", "gpl3 not allowed (licence: gpl2 and gpl3)"),
        ("GPL-3.0-only", "gpl3 not allowed"),
        ("AGPL-3.0-only OR GPL-3.0-only", "agpl or gpl3 not allowed"),
        ("MIT AND GPL-3.0-only", "gpl3 not allowed (licence: gpl3 and mit)"),
    ],
)
def test_not_in_names_only_the_refused_families(licence: str, expected: str) -> None:
    policy = Policy(name="p", licenses={"gpl3", "agpl"}, licenses_mode=SetMode.NOT_IN)
    [detail] = _reasons(policy, license=licence)
    assert detail == expected
    assert "gpl2" not in detail.split(" (")[0]


def test_in_names_only_the_families_outside_the_list() -> None:
    policy = Policy(name="p", licenses={"mit", "bsd"}, licenses_mode=SetMode.IN)
    [detail] = _reasons(policy, license="MIT AND GPL-3.0-only")
    assert detail == "gpl3 not in bsd, mit (licence: gpl3 and mit)"
    assert _reasons(policy, license="MIT") == []


def test_refusal_every_alternative_counted_once() -> None:
    alts = lic.family_alternatives(None, "GPL-3.0-only OR (GPL-3.0-only AND MIT)")
    text = lic.refusal(alts, frozenset({"gpl3"}), SetMode.NOT_IN)
    assert text.startswith("gpl3 not allowed")


def test_signed_only_is_accepted_now_that_signatures_are_verified() -> None:
    """Issue 14: upstream signatures are verified against a mirror's trusted root, so a new or
    changed policy may ask for them (it was refused while nothing could meet it)."""
    assert parse_new_definition("p", {"signed_only": True, "keep_latest": 1}).signed_only
    parse_new_definition("p", {"signed_only": False, "keep_latest": 1})
    assert parse_definition("stored", {"signed_only": True}).signed_only


@pytest.mark.parametrize(
    ("field", "value"),
    [("date_from", "0001-01-01T00:00:00+14:00"), ("date_to", "9999-12-31T23:59:59-14:00")],
)
def test_dates_out_of_range_in_utc_name_the_field(field: str, value: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_new_definition("p", {field: value})
    assert caught.value.extra["field"] == field
