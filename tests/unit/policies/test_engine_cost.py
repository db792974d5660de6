"""Policy engine, issue 4 (speed and memory): the shortcuts taken give the same verdicts and reasons."""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stockade.policies.engine import (
    EvaluationContext,
    InMemoryLinkScripts,
    InMemorySignatures,
    InMemoryVerdicts,
    InMemoryVulnerabilities,
    evaluate,
    evaluate_subdirs,
)
from stockade.policies.model import CveScore, Policy

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _records(seed: int, count: int = 400) -> dict[str, dict[str, Any]]:
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    for i in range(count):
        name = f"n{rng.randrange(30)}"
        if rng.random() < 0.05:
            name = name.upper()  # a mixed-case name now and then
        r: dict[str, Any] = {
            "name": name,
            "version": f"{rng.randrange(4)}.{rng.randrange(5)}",
            "build": f"h{i}_0",
            "build_number": 0,
            "depends": [f"n{rng.randrange(30)} >={rng.randrange(3)}"],
            "license": rng.choice(["MIT", "GPL-3.0-only", "BSD-3-Clause", None]),
            "subdir": "linux-64",
        }
        if rng.random() < 0.9:
            day = datetime(2022, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(900))
            stamp = day.timestamp() + rng.choice([0, 0.0005, 3600, 86399.9995])
            r["timestamp"] = int(stamp * 1000) if rng.random() < 0.5 else stamp
        out[f"{name}-{r['version']}-{r['build']}.conda"] = r
    return out


# Lookups that are not the in-memory classes: the engine calls them per record / per (name, version).
@dataclass
class _Vulns:
    inner: InMemoryVulnerabilities

    def max_score(self, name: str, version: str, statuses: frozenset[str]) -> float | None:
        return self.inner.max_score(name, version, statuses)

    def has_uncurated(self, name: str, version: str) -> bool:
        return self.inner.has_uncurated(name, version)


@dataclass
class _Sigs:
    inner: InMemorySignatures

    def is_signed(self, filename: str) -> bool:
        return self.inner.is_signed(filename)

    def why_unsigned(self, filename: str) -> str:
        return self.inner.why_unsigned(filename)


@dataclass
class _Scripts:
    inner: InMemoryLinkScripts

    def has_link_scripts(self, filename: str) -> bool | None:
        return self.inner.has_link_scripts(filename)


@dataclass
class _Verdicts:
    inner: InMemoryVerdicts

    def is_malicious(self, filename: str) -> bool:
        return self.inner.is_malicious(filename)


def _contexts(records: dict[str, dict[str, Any]]) -> tuple[EvaluationContext, EvaluationContext]:
    rng = random.Random(5)
    fns = sorted(records)
    vulns = InMemoryVulnerabilities(
        {
            (r["name"], r["version"]): [
                (rng.choice([5.0, 9.1, 9.8]), rng.choice(["active", "reported"]))
            ]
            for r in rng.sample(list(records.values()), 40)
        }
    )
    sigs = InMemorySignatures(set(rng.sample(fns, 200)))
    scripts = InMemoryLinkScripts({fn: rng.random() < 0.5 for fn in rng.sample(fns, 60)})
    verdicts = InMemoryVerdicts(set(rng.sample(fns, 5)))
    fast = EvaluationContext(
        now=NOW, vulnerabilities=vulns, signatures=sigs, link_scripts=scripts, verdicts=verdicts
    )
    generic = EvaluationContext(
        now=NOW,
        vulnerabilities=_Vulns(vulns),
        signatures=_Sigs(sigs),
        link_scripts=_Scripts(scripts),
        verdicts=_Verdicts(verdicts),
    )
    return fast, generic


POLICY = Policy(
    name="p",
    licenses={"gpl3"},
    exclude_specs=("n1 <2",),
    date_from=datetime(2022, 6, 1, tzinfo=UTC),
    date_to=datetime(2024, 5, 1, tzinfo=UTC),
    cooldown_days=60,
    cve_score=CveScore(9.0),
    uncurated_cves=True,
    signed_only=True,
    no_link_scripts=True,
    keep_latest=2,
    exceptions=("n2",),
)


@pytest.mark.parametrize("seed", range(4))
def test_in_memory_shortcuts_match_generic_lookups(seed: int) -> None:
    records = _records(seed)
    fast, generic = _contexts(records)
    for policy in (POLICY, Policy(name="q", cve_score=CveScore(9.0), uncurated_cves=True)):
        a = evaluate([policy], records, subdir="linux-64", context=fast)
        b = evaluate([policy], records, subdir="linux-64", context=generic)
        assert a.kept == b.kept
        assert a.excluded == b.excluded
        assert list(a.counts().items()) == list(b.counts().items())


def test_date_reasons_are_shared_per_day_with_the_right_dates() -> None:
    day = datetime(1970, 1, 11, tzinfo=UTC).timestamp()  # fine float precision near 0
    records = {
        f"a-1.{i}-0.conda": {"name": "a", "version": f"1.{i}", "build": "0", "timestamp": ts}
        for i, ts in enumerate([day, day + 3600, day + 86399.9999999, day + 86400])
    }
    ev = evaluate(
        [Policy(name="p", date_from=datetime(2021, 1, 1, tzinfo=UTC))],
        records,
        subdir="linux-64",
        context=EvaluationContext(now=NOW),
    )
    details = [ev.excluded[fn][0].detail for fn in records]
    assert details == [
        "published 1970-01-11 before 2021-01-01",
        "published 1970-01-11 before 2021-01-01",
        "published 1970-01-12 before 2021-01-01",  # rounds to the next day, as datetime does
        "published 1970-01-12 before 2021-01-01",
    ]
    first, second = (ev.excluded[fn][0] for fn in list(records)[:2])
    assert first is second  # one Reason object per distinct detail
    assert ev.counts() == {"p: date_window": 4}


def test_counts_order_and_multi_reason_records() -> None:
    records = {
        "a-1-0.conda": {"name": "a", "version": "1", "build": "0", "license": "GPL-3.0-only"},
        "b-1-0.conda": {"name": "b", "version": "1", "build": "0"},
        "c-1-0.conda": {"name": "c", "version": "1", "build": "0", "license": "GPL-3.0-only"},
    }
    pol = Policy(name="p", licenses={"gpl3"}, date_from=datetime(2020, 1, 1, tzinfo=UTC))
    ev = evaluate([pol], records, subdir="linux-64", context=EvaluationContext(now=NOW))
    # a and c: licence and date; b: date only. Ties keep the order first seen.
    assert list(ev.counts().items()) == [("p: date_window", 3), ("p: licenses", 2)]
    assert [r.criterion for r in ev.excluded["a-1-0.conda"]] == ["licenses", "date_window"]


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_state_is_restored(enabled: bool) -> None:
    records = _records(1, 50)
    was = gc.isenabled()
    try:
        if enabled:
            gc.enable()
        else:
            gc.disable()
        evaluate_subdirs([POLICY], {"linux-64": records}, context=EvaluationContext(now=NOW))
        assert gc.isenabled() is enabled
        with pytest.raises(AttributeError):
            evaluate_subdirs([POLICY], {"linux-64": {"x.conda": None}}, context=None)  # type: ignore[dict-item, arg-type]
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()
