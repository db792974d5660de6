"""Policy engine (SPEC §6): each criterion, exceptions, malicious, keep_latest, dependencies, explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from rattler import BuildString, MatchSpec, PackageRecord

from stockade.core.errors import InvalidInputError, NotFoundError
from stockade.policies import licenses as lic
from stockade.policies.engine import (
    EvaluationContext,
    InMemoryLinkScripts,
    InMemorySignatures,
    InMemoryVerdicts,
    InMemoryVulnerabilities,
    evaluate,
    evaluate_subdirs,
    explain,
    timestamp_seconds,
)
from stockade.policies.model import CveScore, Policy, SetMode
from tests.conftest import TESTDATA

NOW = datetime(2024, 6, 1, tzinfo=UTC)
CTX = EvaluationContext(now=NOW)
REPODATA = TESTDATA / "repodata"


def rec(name: str, version: str, build: str = "0", **kw: Any) -> tuple[str, dict[str, Any]]:
    r: dict[str, Any] = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": [],
        "subdir": "linux-64",
    }
    r.update(kw)
    return f"{name}-{version}-{build}.conda", r


def recs(*items: tuple[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return dict(items)


def kept(
    policies: list[Policy],
    records: dict[str, Any],
    ctx: EvaluationContext = CTX,
    subdir: str = "linux-64",
) -> set[str]:
    return evaluate(policies, records, subdir=subdir, context=ctx).kept


BASE = recs(
    rec(
        "numpy",
        "1.26.4",
        license="BSD-3-Clause",
        timestamp=int(datetime(2024, 2, 1, tzinfo=UTC).timestamp() * 1000),
    ),
    rec(
        "readline",
        "8.2",
        license="GPL-3.0-only",
        timestamp=int(datetime(2023, 1, 1, tzinfo=UTC).timestamp()),
    ),
    rec("fresh", "1.0", license="MIT", timestamp=int((NOW - timedelta(days=2)).timestamp() * 1000)),
    rec("old", "0.1", license="MIT"),
)


# ------------------------------------------------------------------------------------------ model


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"only_specs": ("numpy >=>=1",)}, "only_specs"),
        ({"exclude_specs": ("",)}, "exclude_specs"),
        ({"exceptions": (">=1",)}, "exceptions"),
        ({"licenses": {"gpl4"}}, "licenses"),
        ({"cooldown_days": -1}, "cooldown_days"),
        ({"keep_latest": 0}, "keep_latest"),
        ({"platforms_mode": "maybe"}, "platforms_mode"),
        ({"date_from": datetime(2024, 1, 2), "date_to": datetime(2024, 1, 1)}, "date_to"),
        ({"name": " "}, "name"),
        ({"only_specs": "numpy"}, "only_specs"),
    ],
)
def test_invalid_policy_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    args = {"name": "p", **kwargs}
    with pytest.raises(InvalidInputError) as err:
        Policy(**args)
    assert err.value.extra["field"] == field
    assert field in str(err.value)


def test_invalid_cve_and_from_dict() -> None:
    with pytest.raises(InvalidInputError, match=r"cve_score\.operator"):
        CveScore(7.0, operator="<")
    with pytest.raises(InvalidInputError, match=r"cve_score\.threshold"):
        CveScore(11)
    with pytest.raises(InvalidInputError, match="nonsense"):
        Policy.from_dict({"name": "p", "nonsense": 1})
    p = Policy.from_dict(
        {
            "name": "p",
            "licenses": ["GPL3"],
            "cve_score": {"threshold": 7, "operator": ">"},
            "date_from": "2024-01-01",
        }
    )
    assert p.licenses == frozenset({"gpl3"})
    assert p.cve_score == CveScore(7, ">")
    assert p.date_from == datetime(2024, 1, 1, tzinfo=UTC)


def test_timestamp_ms_and_s() -> None:
    assert timestamp_seconds(1518197313289) == pytest.approx(1518197313.289)
    assert timestamp_seconds(1518197313) == 1518197313
    assert timestamp_seconds(None) is None


# ------------------------------------------------------------------------------------------ criteria


def test_no_policy_keeps_everything() -> None:
    assert kept([], BASE) == set(BASE)


def test_platforms_in_and_noarch_rule() -> None:
    p_in = Policy(name="p", platforms=("osx-64",))
    assert kept([p_in], BASE) == set()
    assert kept([p_in], BASE, subdir="noarch") == set(BASE)  # noarch kept unless named
    p_not = Policy(name="p", platforms=("noarch",), platforms_mode=SetMode.NOT_IN)
    assert kept([p_not], BASE, subdir="noarch") == set()
    assert kept([p_not], BASE) == set(BASE)
    ev = evaluate([p_in], BASE, subdir="linux-64", context=CTX)
    assert str(ev.excluded["old-0.1-0.conda"][0]) == "p: platforms: linux-64 not in osx-64"


def test_licenses_not_in_and_in() -> None:
    ev = evaluate(
        [Policy(name="safe-licences", licenses={"gpl3"})], BASE, subdir="linux-64", context=CTX
    )
    assert ev.kept == set(BASE) - {"readline-8.2-0.conda"}
    assert [str(r) for r in ev.excluded["readline-8.2-0.conda"]] == [
        "safe-licences: licenses: gpl3 not allowed"
    ]
    only = Policy(name="p", licenses={"mit", "bsd"}, licenses_mode=SetMode.IN)
    assert kept([only], BASE) == {"numpy-1.26.4-0.conda", "fresh-1.0-0.conda", "old-0.1-0.conda"}


def test_specs() -> None:
    assert kept([Policy(name="p", only_specs=("numpy >=1.20", "read*"))], BASE) == {
        "numpy-1.26.4-0.conda",
        "readline-8.2-0.conda",
    }
    assert kept([Policy(name="p", exclude_specs=("numpy <2",))], BASE) == set(BASE) - {
        "numpy-1.26.4-0.conda"
    }
    assert kept([Policy(name="p", exclude_specs=("numpy >=2",))], BASE) == set(BASE)


def test_date_window_and_cooldown() -> None:
    window = Policy(
        name="p",
        date_from=datetime(2023, 6, 1, tzinfo=UTC),
        date_to=datetime(2024, 3, 1, tzinfo=UTC),
    )
    # numpy (ms) inside; readline (s) before; fresh after; old has no timestamp -> excluded
    assert kept([window], BASE) == {"numpy-1.26.4-0.conda"}
    ev = evaluate([window], BASE, subdir="linux-64", context=CTX)
    assert ev.excluded["old-0.1-0.conda"][0].detail == "no timestamp"
    cool = Policy(name="p", cooldown_days=7)
    assert kept([cool], BASE) == set(BASE) - {"fresh-1.0-0.conda"}  # no timestamp passes cooldown
    later = EvaluationContext(now=NOW + timedelta(days=10))
    assert kept([cool], BASE, later) == set(BASE)


def test_cve_uncurated_signed_link_scripts() -> None:
    vulns = InMemoryVulnerabilities(
        {
            ("numpy", "1.26.4"): [(7.5, "active"), (9.8, "mitigated")],
            ("readline", "8.2"): [(5.0, "reported")],
        }
    )
    ctx = EvaluationContext(
        now=NOW,
        vulnerabilities=vulns,
        signatures=InMemorySignatures({"numpy-1.26.4-0.conda"}),
        link_scripts=InMemoryLinkScripts({"fresh-1.0-0.conda": True, "old-0.1-0.conda": False}),
    )
    assert kept([Policy(name="p", cve_score=CveScore(7.5, ">="))], BASE, ctx) == set(BASE) - {
        "numpy-1.26.4-0.conda"
    }
    assert kept([Policy(name="p", cve_score=CveScore(7.5, ">"))], BASE, ctx) == set(BASE)
    mitigated = CveScore(9, ">=", frozenset({"mitigated"}))
    assert kept([Policy(name="p", cve_score=mitigated)], BASE, ctx) == set(BASE) - {
        "numpy-1.26.4-0.conda"
    }
    assert kept([Policy(name="p", uncurated_cves=True)], BASE, ctx) == set(BASE) - {
        "readline-8.2-0.conda"
    }
    assert kept([Policy(name="p", signed_only=True)], BASE, ctx) == {"numpy-1.26.4-0.conda"}
    # unknown link scripts (readline, numpy) are kept
    assert kept([Policy(name="p", no_link_scripts=True)], BASE, ctx) == set(BASE) - {
        "fresh-1.0-0.conda"
    }
    # no data: nothing vulnerable, nothing signed
    assert kept([Policy(name="p", cve_score=CveScore(0.0), uncurated_cves=True)], BASE) == set(BASE)
    assert kept([Policy(name="p", signed_only=True)], BASE) == set()


CRITERIA = [
    Policy(name="p", platforms=("osx-64",), exceptions=("numpy",)),
    Policy(name="p", licenses={"bsd"}, exceptions=("numpy",)),
    Policy(name="p", only_specs=("readline",), exceptions=("numpy",)),
    Policy(name="p", exclude_specs=("numpy",), exceptions=("numpy",)),
    Policy(name="p", date_from=datetime(2030, 1, 1), exceptions=("numpy",)),
    Policy(name="p", cooldown_days=36500, exceptions=("numpy",)),
    Policy(name="p", cve_score=CveScore(1.0), exceptions=("numpy",)),
    Policy(name="p", uncurated_cves=True, exceptions=("numpy",)),
    Policy(name="p", signed_only=True, exceptions=("numpy",)),
    Policy(name="p", no_link_scripts=True, exceptions=("numpy",)),
]


@pytest.mark.parametrize("policy", CRITERIA)
def test_exception_overrides_each_criterion_but_not_malicious(policy: Policy) -> None:
    ctx = EvaluationContext(
        now=NOW,
        vulnerabilities=InMemoryVulnerabilities({("numpy", "1.26.4"): [(9.0, "reported")]}),
        link_scripts=InMemoryLinkScripts({"numpy-1.26.4-0.conda": True}),
    )
    without = Policy(
        **{**{f: getattr(policy, f) for f in policy.__dataclass_fields__}, "exceptions": ()}
    )
    assert "numpy-1.26.4-0.conda" not in kept([without], BASE, ctx)
    assert "numpy-1.26.4-0.conda" in kept([policy], BASE, ctx)
    bad = EvaluationContext(now=NOW, verdicts=InMemoryVerdicts({"numpy-1.26.4-0.conda"}))
    ev = evaluate([policy], BASE, subdir="linux-64", context=bad)
    assert "numpy-1.26.4-0.conda" not in ev.kept
    assert ev.excluded["numpy-1.26.4-0.conda"][0].criterion == "malicious"


def test_every_policy_must_pass() -> None:
    a = Policy(name="a", exclude_specs=("numpy",))
    b = Policy(name="b", exclude_specs=("readline",), exceptions=("numpy",))
    ev = evaluate([a, b], BASE, subdir="linux-64", context=CTX)
    assert ev.kept == {"fresh-1.0-0.conda", "old-0.1-0.conda"}
    assert [str(r) for r in ev.excluded["numpy-1.26.4-0.conda"]] == [
        "a: exclude_specs: matches numpy"
    ]


def test_keep_latest_rattler_ordering() -> None:
    data = recs(
        rec("a", "1.9"),
        rec("a", "1.10"),
        rec("a", "1.10", "1"),
        rec("a", "2.0.0rc1"),
        rec("a", "2.0.0"),
        rec("b", "0.1"),
    )
    assert kept([Policy(name="p", keep_latest=1)], data) == {"a-2.0.0-0.conda", "b-0.1-0.conda"}
    assert kept([Policy(name="p", keep_latest=3)], data) == {
        "a-2.0.0-0.conda",
        "a-2.0.0rc1-0.conda",
        "a-1.10-0.conda",
        "a-1.10-1.conda",
        "b-0.1-0.conda",
    }
    # keep_latest counts only versions that pass the other criteria
    p = Policy(name="p", keep_latest=1, exclude_specs=("a >=2.0.0rc1",))
    assert kept([p], data) == {"a-1.10-0.conda", "a-1.10-1.conda", "b-0.1-0.conda"}


# ------------------------------------------------------------------------------------------ dependencies

GRAPH = recs(
    rec("app", "1.0", depends=["lib >=2", "__glibc >=2.17", "external-thing"]),
    rec("lib", "1.0", depends=[]),
    rec("lib", "2.0", depends=["base"]),
    rec("lib", "2.1", depends=["base", "gone >=5"]),
    rec("base", "1.0"),
    rec("gone", "4.0"),
    rec("other", "1.0"),
)


def test_include_dependencies_closure() -> None:
    p = Policy(name="p", only_specs=("app",), include_dependencies=True)
    assert kept([p], GRAPH) == {
        "app-1.0-0.conda",
        "lib-2.0-0.conda",
        "lib-2.1-0.conda",
        "base-1.0-0.conda",
    }  # all satisfying versions of lib; gone-4.0 does not satisfy "gone >=5" so it is not pulled in
    # closure does not lift other criteria
    p2 = Policy(name="p", only_specs=("app",), include_dependencies=True, exclude_specs=("base",))
    assert kept([p2], GRAPH) == {"app-1.0-0.conda", "lib-2.0-0.conda", "lib-2.1-0.conda"}


def test_prune_fixpoint() -> None:
    p = Policy(name="p", prune_unsatisfiable=True)
    ev = evaluate([p], GRAPH, subdir="linux-64", context=CTX)
    # lib 2.1 needs gone >=5 (name present upstream, no version satisfies) -> pruned; the rest is fine
    assert ev.kept == set(GRAPH) - {"lib-2.1-0.conda"}
    p2 = Policy(name="p", prune_unsatisfiable=True, exclude_specs=("base",))
    ev2 = evaluate([p2], GRAPH, subdir="linux-64", context=CTX)
    # base gone -> lib 2.0 and 2.1 unsatisfiable -> app unsatisfiable (fixpoint)
    assert ev2.kept == {"lib-1.0-0.conda", "gone-4.0-0.conda", "other-1.0-0.conda"}
    assert (
        str(ev2.excluded["app-1.0-0.conda"][0])
        == "p: prune_unsatisfiable: nothing kept satisfies lib >=2"
    )
    # an exception of the pruning policy protects from pruning
    p3 = Policy(name="p", prune_unsatisfiable=True, exclude_specs=("base",), exceptions=("app",))
    assert "app-1.0-0.conda" in evaluate([p3], GRAPH, subdir="linux-64", context=CTX).kept


def test_noarch_satisfies_arch_dependencies() -> None:
    arch = recs(rec("app", "1.0", depends=["pure-py"]), rec("pure-py", "0.5", subdir="linux-64"))
    noarch = recs(rec("pure-py", "1.0", subdir="noarch"))
    p = Policy(name="p", prune_unsatisfiable=True, exclude_specs=("pure-py <1",))
    res = evaluate_subdirs([p], {"linux-64": arch, "noarch": noarch}, context=CTX)
    assert res["linux-64"].kept == {"app-1.0-0.conda"}
    assert res["noarch"].kept == {"pure-py-1.0-0.conda"}


def test_explain_counts_samples_diff() -> None:
    p = Policy(name="safe", licenses={"gpl3"}, exclude_specs=("numpy",))
    reasons = explain([p], BASE, "readline-8.2-0.conda", CTX, subdir="linux-64")
    assert [str(r) for r in reasons] == ["safe: licenses: gpl3 not allowed"]
    assert explain([p], BASE, "old-0.1-0.conda", CTX, subdir="linux-64") == []
    with pytest.raises(NotFoundError):
        explain([p], BASE, "nope.conda", CTX, subdir="linux-64")
    ev = evaluate([p], BASE, subdir="linux-64", context=CTX)
    assert ev.counts() == {"safe: licenses": 1, "safe: exclude_specs": 1}
    assert ev.samples()["safe: licenses"] == ["readline-8.2-0.conda"]
    add, remove = ev.diff({"numpy-1.26.4-0.conda", "old-0.1-0.conda"})
    assert add == {"fresh-1.0-0.conda"}
    assert remove == {"numpy-1.26.4-0.conda"}


# ------------------------------------------------------------------------------------------ licenses


@pytest.mark.parametrize(
    ("family", "license", "expected"),
    [
        ("GPL3", None, [{"gpl3"}]),
        ("BSD", "whatever", [{"bsd"}]),
        ("LGPL", None, [{"lgpl"}]),
        ("Apache", None, [{"apache"}]),
        ("APACHE", None, [{"apache"}]),
        ("PSF", None, [{"psf"}]),
        ("MOZILLA", None, [{"mozilla"}]),
        ("Public-Domain", None, [{"public_domain"}]),
        ("PROPRIETARY", None, [{"proprietary"}]),
        ("OTHER", None, [{"other"}]),
        ("NONE", None, [{"none"}]),
        (None, None, [{"none"}]),
        ("GPL", None, [{"gpl2", "gpl3"}]),
        (None, "MIT", [{"mit"}]),
        (None, "Apache-2.0", [{"apache"}]),
        (None, "GPL-3.0-or-later", [{"gpl3"}]),
        (None, "BSD-3-Clause", [{"bsd"}]),
        (None, "LGPL-2.1-only", [{"lgpl"}]),
        (None, "MPL-2.0", [{"mozilla"}]),
        (None, "AGPL-3.0", [{"agpl"}]),
        (None, "PSF-2.0", [{"psf"}]),
        (None, "CC0-1.0", [{"public_domain"}]),
        (None, "MIT OR Apache-2.0", [{"mit"}, {"apache"}]),
        (None, "MIT AND BSD-3-Clause", [{"mit", "bsd"}]),
        (None, "(MIT AND BSD-3-Clause) OR GPL-2.0-only", [{"mit", "bsd"}, {"gpl2"}]),
        (None, "GPL-2 | GPL-3", [{"gpl2"}, {"gpl3"}]),
        (None, "MIT + file LICENSE", [{"mit"}]),
        (None, "GPL (>= 2)", [{"gpl2"}]),
        (None, "Some Custom Thing", [{"other"}]),
    ],
)
def test_license_families(
    family: str | None, license: str | None, expected: list[set[str]]
) -> None:
    assert [set(a) for a in lic.family_alternatives(family, license)] == expected


def test_license_or_and_semantics() -> None:
    gpl3 = frozenset({"gpl3"})
    either = lic.family_alternatives(None, "MIT OR GPL-3.0-only")
    both = lic.family_alternatives(None, "MIT AND GPL-3.0-only")
    assert lic.passes(either, gpl3, SetMode.NOT_IN)  # an OR is dropped only if all alternatives are
    assert not lic.passes(both, gpl3, SetMode.NOT_IN)  # an AND is dropped if any family is
    assert not lic.passes(
        lic.family_alternatives(None, "GPL-3.0-only OR AGPL-3.0"),
        frozenset({"gpl3", "agpl"}),
        SetMode.NOT_IN,
    )
    assert lic.passes(either, frozenset({"mit"}), SetMode.IN)
    assert not lic.passes(both, frozenset({"mit"}), SetMode.IN)


# ------------------------------------------------------------------------------------------ real repodata


def _load(name: str) -> dict[str, dict[str, Any]]:
    path = REPODATA / name / "repodata.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    data = orjson.loads(path.read_bytes())
    return {**data.get("packages", {}), **data.get("packages.conda", {})}


@pytest.fixture(scope="module")
def r_linux() -> dict[str, dict[str, Any]]:
    return _load("r-linux-64")


@pytest.fixture(scope="module")
def pytorch() -> dict[str, dict[str, Any]]:
    return _load("pytorch-linux-64")


def _pr(r: dict[str, Any]) -> PackageRecord:
    return PackageRecord(
        name=r["name"],
        version=r["version"],
        build=BuildString(r["build"]),
        build_number=r.get("build_number", 0),
        subdir="linux-64",
    )


@pytest.mark.parametrize(
    "spec", ["r-base >=3.4,<3.5", "r-ggplot2", "r-*", "r-base 3.4.* h*_*", "r-essentials=1.7"]
)
def test_real_only_specs_matches_rattler(r_linux: dict[str, Any], spec: str) -> None:
    ms = MatchSpec(spec, exact_names_only=False)
    expected = {fn for fn, r in r_linux.items() if ms.matches(_pr(r))}
    assert expected
    assert kept([Policy(name="p", only_specs=(spec,))], r_linux) == expected


def test_real_licenses_and_dates(r_linux: dict[str, Any]) -> None:
    bad = frozenset({"gpl3", "agpl"})
    expected = {
        fn
        for fn, r in r_linux.items()
        if lic.passes(
            lic.family_alternatives(r.get("license_family"), r.get("license")), bad, SetMode.NOT_IN
        )
    }
    assert 0 < len(expected) < len(r_linux)
    assert kept([Policy(name="p", licenses=bad)], r_linux) == expected
    start = datetime(2018, 1, 1, tzinfo=UTC)
    exp_dates = {
        fn
        for fn, r in r_linux.items()
        if r.get("timestamp") and r["timestamp"] / 1000 >= start.timestamp()
    }
    assert 0 < len(exp_dates) < len(r_linux)
    assert kept([Policy(name="p", date_from=start)], r_linux) == exp_dates


def test_real_keep_latest(pytorch: dict[str, Any]) -> None:
    from rattler import Version

    by_name: dict[str, set[str]] = {}
    for r in pytorch.values():
        by_name.setdefault(r["name"], set()).add(r["version"])
    newest = {n: set(sorted(vs, key=Version, reverse=True)[:2]) for n, vs in by_name.items()}
    expected = {fn for fn, r in pytorch.items() if r["version"] in newest[r["name"]]}
    assert kept([Policy(name="p", keep_latest=2)], pytorch) == expected


def test_real_prune_is_a_fixpoint(r_linux: dict[str, Any]) -> None:
    p = Policy(name="p", prune_unsatisfiable=True, exclude_specs=("r-base <3.5",))
    ev = evaluate([p], r_linux, subdir="linux-64", context=CTX)
    names = {r["name"] for r in r_linux.values()}
    keptrecs = [r_linux[fn] for fn in ev.kept]
    for r in (
        keptrecs
    ):  # every dependency of every kept record is satisfied by a kept record (or external)
        for dep in r.get("depends", []):
            ms = MatchSpec(dep)
            name = ms.name.as_package_name().normalized
            if name.startswith("__") or name not in names:
                continue
            assert any(k["name"] == name and ms.matches(_pr(k)) for k in keptrecs), (r["name"], dep)
    assert ev.counts()["p: prune_unsatisfiable"] > 0


def test_slow_path_specs_with_brackets(r_linux: dict[str, Any]) -> None:
    spec = "r-base[build_number=0]"
    expected = {
        fn for fn, r in r_linux.items() if r["name"] == "r-base" and r.get("build_number") == 0
    }
    assert expected
    assert kept([Policy(name="p", only_specs=(spec,))], r_linux) == expected


# ------------------------------------------------------------- optimised prune vs naive reference


def _naive_prune(
    by_sd: dict[str, dict[str, dict[str, Any]]],
    start: dict[str, set[str]],
    protected: set[tuple[str, str]],
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """Reference: full re-scans with rattler MatchSpec.matches until nothing changes; the reason is the
    first depends entry that nothing in the final kept set satisfies."""
    names = {r["name"] for recs_ in by_sd.values() for r in recs_.values()}
    prs = {
        (sd, fn): PackageRecord(
            name=r["name"],
            version=r["version"],
            build=BuildString(r["build"]),
            build_number=r.get("build_number", 0),
            subdir=sd,
        )
        for sd, recs_ in by_sd.items()
        for fn, r in recs_.items()
    }

    def unsatisfied(key: tuple[str, str], keep: set[tuple[str, str]]) -> str | None:
        sd, fn = key
        dep: str
        for dep in by_sd[sd][fn].get("depends") or ():
            ms = MatchSpec(dep)
            pkg = ms.name.as_package_name()
            assert pkg is not None
            name = pkg.normalized
            if name.startswith("__") or name not in names:
                continue
            if not any(
                (sd == "noarch" or csd in (sd, "noarch")) and ms.matches(prs[(csd, cfn)])
                for csd, cfn in keep
                if by_sd[csd][cfn]["name"] == name
            ):
                return dep
        return None

    keep = {(sd, fn) for sd, fns in start.items() for fn in fns}
    changed = True
    while changed:
        changed = False
        for key in sorted(keep):
            if key not in protected and unsatisfied(key, keep) is not None:
                keep.discard(key)
                changed = True
    start_keys = {(sd, fn) for sd, fns in start.items() for fn in fns}
    reasons = {key: unsatisfied(key, keep) or "" for key in start_keys - keep}
    return keep, reasons


def _check_prune_against_naive(
    by_sd: dict[str, dict[str, dict[str, Any]]], policy: Policy, protect: tuple[str, ...] = ()
) -> int:
    base = Policy(**{**{f: getattr(policy, f) for f in ("name", "exclude_specs")}})
    before = evaluate_subdirs([base], by_sd, context=CTX)
    res = evaluate_subdirs([policy], by_sd, context=CTX)
    protected = {
        (sd, fn)
        for sd, recs_ in by_sd.items()
        for fn, r in recs_.items()
        if any(MatchSpec(s).matches(_pr(r)) for s in protect)
    }
    keep, reasons = _naive_prune(by_sd, {sd: ev.kept for sd, ev in before.items()}, protected)
    got = {(sd, fn) for sd, ev in res.items() for fn in ev.kept}
    assert got == keep
    for (sd, fn), dep in reasons.items():
        assert [str(r) for r in res[sd].excluded[fn]] == [
            f"{policy.name}: prune_unsatisfiable: nothing kept satisfies {dep}"
        ]
    return len(reasons)


def test_prune_matches_naive_reference_on_real_repodata(r_linux: dict[str, Any]) -> None:
    p = Policy(name="p", prune_unsatisfiable=True, exclude_specs=("r-base <3.5", "r-rlang"))
    assert _check_prune_against_naive({"linux-64": r_linux}, p) > 0
    p2 = Policy(
        name="p",
        prune_unsatisfiable=True,
        exclude_specs=("r-base <3.5", "r-rlang"),
        exceptions=("r-ggplot2",),
    )
    assert _check_prune_against_naive({"linux-64": r_linux}, p2, protect=("r-ggplot2",)) > 0


@pytest.mark.parametrize("seed", range(8))
def test_prune_matches_naive_reference_on_random_graphs(seed: int) -> None:
    import random

    rng = random.Random(seed)
    names = [f"n{i}" for i in range(25)]
    by_sd: dict[str, dict[str, dict[str, Any]]] = {"linux-64": {}, "noarch": {}}
    for _ in range(160):
        sd = "noarch" if rng.random() < 0.25 else "linux-64"
        name = rng.choice(names)
        version = f"{rng.randrange(4)}.{rng.randrange(3)}"
        build = rng.choice(["h0_0", "h1_1", "py_0"])
        deps = []
        for _ in range(rng.randrange(4)):
            d = rng.choice(names)
            form = rng.randrange(6)
            deps.append(
                [
                    d,
                    f"{d} >={rng.randrange(4)}",
                    f"{d} <{rng.randrange(1, 4)}.{rng.randrange(3)}",
                    f"{d} {rng.randrange(4)}.* h1_*",
                    f"{d}[build_number=0]",
                    "__glibc >=2.17" if rng.random() < 0.5 else "not-upstream >=1",
                ][form]
            )
        fn, r = rec(name, version, build, depends=deps, subdir=sd)
        by_sd[sd][fn] = r
    excl = tuple(f"{rng.choice(names)} <{rng.randrange(1, 4)}" for _ in range(4))
    p = Policy(name="p", prune_unsatisfiable=True, exclude_specs=excl)
    _check_prune_against_naive(by_sd, p)
    keep_spec = f"{rng.choice(names)} >=1"
    pe = Policy(name="p", prune_unsatisfiable=True, exclude_specs=excl, exceptions=(keep_spec,))
    _check_prune_against_naive(by_sd, pe, protect=(keep_spec,))


@pytest.mark.parametrize("seed", range(4))
def test_include_dependencies_matches_naive_closure(seed: int) -> None:
    import random

    rng = random.Random(100 + seed)
    names = [f"n{i}" for i in range(20)]
    records: dict[str, dict[str, Any]] = {}
    for _ in range(120):
        name = rng.choice(names)
        deps = [f"{rng.choice(names)} >={rng.randrange(3)}" for _ in range(rng.randrange(3))]
        fn, r = rec(
            name, f"{rng.randrange(3)}.{rng.randrange(3)}", f"h{rng.randrange(3)}", depends=deps
        )
        records[fn] = r
    p = Policy(
        name="p",
        only_specs=(names[0], names[1]),
        exclude_specs=(f"{names[2]} <1",),
        include_dependencies=True,
    )
    got = kept([p], records)
    # naive closure: start from only/exclude result, add every satisfying non-excluded record
    excluded = {fn for fn, r in records.items() if MatchSpec(f"{names[2]} <1").matches(_pr(r))}
    keep = {fn for fn, r in records.items() if r["name"] in names[:2] and fn not in excluded}
    changed = True
    while changed:
        changed = False
        for fn in sorted(keep):
            for dep in records[fn]["depends"]:
                ms = MatchSpec(dep)
                for cfn, c in records.items():
                    if cfn not in keep and cfn not in excluded and ms.matches(_pr(c)):
                        keep.add(cfn)
                        changed = True
    assert got == keep
