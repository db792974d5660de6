"""Every policy criterion of SPEC §6 and its exceptions, end to end over HTTP.

A PASSIVE mirror (records are published without their files) of a ``file://`` upstream laid out
here: ``linux-64`` is Anaconda's real ``r`` repodata (4,211 records), ``noarch`` and ``linux-fake``
are the real ``test-recipes`` repodata. One policy per test is assigned to the mirror (the previous
one unassigned), checked first by a dry run, then by a run; the channel's published
``repodata.json`` must equal the set each test computes on its own, with a plain loop over the
upstream records (py-rattler's ``MatchSpec``/``Version`` for spec and version semantics; the policy
engine is never called). Every policy carries an exception that must override its criterion.
The CVE criteria read real vulnerability data: OSV advisories the tests write into a ``file://``
feed for the mirrored names and versions, synced and curated through the API (``KnownVulns``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rattler import BuildString, MatchSpec, PackageRecord, Version

from tests.conftest import PG_URL, backends
from tests.support.mirror_api import (
    admin,
    assign,
    dry_run,
    explain,
    make_mirror,
    make_policy,
    published_names,
    run_mirror,
    settled,
    unassign,
    unique,
)
from tests.support.mirror_data import (
    PYTORCH_LINUX_64,
    R_LINUX_64,
    TEST_RECIPES,
    TESTDATA,
    empty_repodata,
    write_repodata,
)
from tests.support.server import LiveServer, fresh_database, run_server

# SQLite only (one_backend, CI time): what this checks is policy evaluation, which does not depend
# on the database or the deployment; on the cluster configuration these runs cost 3 minutes of CI
# (every mirrored file through S3). Mirror runs on the cluster are checked by test_mirror_runs,
# test_mirror_clients, test_mirror_signatures and the fault suite.
pytestmark = [
    pytest.mark.functional,
    pytest.mark.xdist_group("mirror-policies"),
    pytest.mark.one_backend,
]

Records = dict[str, dict[str, dict[str, Any]]]  # subdir -> filename -> record
SUBDIRS = ["linux-64", "noarch", "linux-fake"]


# ---------------------------------------------------------------------------------- upstream


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_bytes())
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _records(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**doc.get("packages", {}), **doc.get("packages.conda", {})}


def lay_out(root: Path, subdirs: dict[str, Path | None]) -> Records:
    """Write ``root/<subdir>/repodata.json`` from each source (None: empty); returns the records."""
    out: Records = {}
    for subdir, source in subdirs.items():
        doc = _load(source) if source is not None else empty_repodata(subdir)
        write_repodata(root / subdir, doc, zst=False)
        out[subdir] = _records(doc)
    return out


# --------------------------------------------------------------------- independent expectations

_PKG: dict[tuple[str, str], PackageRecord] = {}
_SPECS: dict[str, MatchSpec] = {}


def _package(subdir: str, rec: dict[str, Any]) -> PackageRecord:
    key = (subdir, f"{rec['name']}-{rec['version']}-{rec['build']}")
    found = _PKG.get(key)
    if found is None:
        found = _PKG[key] = PackageRecord(
            name=rec["name"],
            version=rec["version"],
            build=BuildString(rec["build"]),
            build_number=int(rec.get("build_number", 0)),
            subdir=subdir,
        )
    return found


def _spec(text: str) -> MatchSpec:
    found = _SPECS.get(text)
    if found is None:
        found = _SPECS[text] = MatchSpec(text, strict=False, exact_names_only=False)
    return found


def matches(spec: str, subdir: str, rec: dict[str, Any]) -> bool:
    return bool(_spec(spec).matches(_package(subdir, rec)))


def matching(up: Records, specs: list[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for spec in specs:
        name = dep_name(spec)
        for sd, recs in up.items():
            for fn, rec in recs.items():
                if ("*" in name or rec["name"] == name) and matches(spec, sd, rec):
                    found.add((sd, fn))
    return found


def every(up: Records) -> set[tuple[str, str]]:
    return {(sd, fn) for sd, recs in up.items() for fn in recs}


def per_subdir(keys: set[tuple[str, str]], subdirs: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {sd: set() for sd in subdirs}
    for sd, fn in keys:
        out[sd].add(fn)
    return out


def seconds(rec: dict[str, Any]) -> float | None:
    ts = rec.get("timestamp")
    if ts is None:
        return None
    return ts / 1000 if ts > 1e11 else float(ts)


def dep_name(dep: str) -> str:
    return re.split(r"[\s\[=<>!~]", dep.strip(), maxsplit=1)[0]


def candidates(up: Records, subdir: str, name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Records a dependency of a record in ``subdir`` may resolve to: same subdir plus noarch
    (a noarch record's dependencies resolve in every subdir)."""
    places = list(up) if subdir == "noarch" else [subdir, "noarch"]
    for sd in places:
        for fn, rec in up.get(sd, {}).items():
            if rec["name"] == name:
                yield sd, fn, rec


# ----------------------------------------------------------------------------------- licenses

GPL = frozenset({"gpl2", "gpl3"})
# The license_family values of the r and pytorch channels, read as the SPEC's families.
FAMILY: dict[str, list[frozenset[str]]] = {
    "GPL3": [frozenset({"gpl3"})],
    "GPL2": [frozenset({"gpl2"})],
    "GPL": [GPL],  # unversioned: conservatively both (documented in policies/licenses.py)
    "LGPL": [frozenset({"lgpl"})],
    "AGPL": [frozenset({"agpl"})],
    "MIT": [frozenset({"mit"})],
    "BSD": [frozenset({"bsd"})],
    "APACHE": [frozenset({"apache"})],
    "Apache": [frozenset({"apache"})],
    "Other": [frozenset({"other"})],
    "OTHER": [frozenset({"other"})],
    "CC": [frozenset({"other"})],
    "Public-Domain": [frozenset({"public_domain"})],
    "Proprietary": [frozenset({"proprietary"})],
}
# Every `license` string of a record WITHOUT license_family in those channels, as OR-alternatives
# of AND-sets ("| file LICENSE" adds no alternative of its own; "GPL (>= 2)" may be taken as
# either version).
LICENSE: dict[str | None, list[frozenset[str]]] = {
    None: [frozenset({"none"})],
    "GPL (>= 2)": [frozenset({"gpl2"}), frozenset({"gpl3"})],
    "GPL-2": [frozenset({"gpl2"})],
    "MIT + file LICENSE": [frozenset({"mit"})],
    "GPL": [GPL],
    "GPL-2 | GPL-3": [frozenset({"gpl2"}), frozenset({"gpl3"})],
    "GPL-3": [frozenset({"gpl3"})],
    "GPL (>= 3)": [frozenset({"gpl3"})],
    "GPL-3 | file LICENSE": [frozenset({"gpl3"})],
    "GPL-2.0": [frozenset({"gpl2"})],
    "Unlimited": [frozenset({"other"})],
    "LGPL (>= 2)": [frozenset({"lgpl"})],
    "GPL-3.0": [frozenset({"gpl3"})],
    "BSD_3_clause + file LICENSE": [frozenset({"bsd"})],
    "Apache License (== 2.0)": [frozenset({"apache"})],
    "BSD": [frozenset({"bsd"})],
    "BSD_2_clause + file LICENSE": [frozenset({"bsd"})],
    "GNU General Public License v2 or later (GPLv2+)": [frozenset({"gpl2"}), frozenset({"gpl3"})],
    "Lucent Public License": [frozenset({"other"})],
    "GPL (>= 2) | file LICENSE": [frozenset({"gpl2"}), frozenset({"gpl3"})],
    "file LICENSE (FOSS)": [frozenset({"other"})],
    "GPL-2 | file LICENSE": [frozenset({"gpl2"})],
    "CC0": [frozenset({"public_domain"})],
    "BSL-1.0": [frozenset({"other"})],
    "GPL (>= 3) | file LICENCE": [frozenset({"gpl3"})],
    "MIT + file LICENSE | Unlimited": [frozenset({"mit"}), frozenset({"other"})],
    "GPL-2 | GPL-3 | file LICENSE": [frozenset({"gpl2"}), frozenset({"gpl3"})],
    "LGPL-2": [frozenset({"lgpl"})],
    "LGPL-3": [frozenset({"lgpl"})],
    "Apache License 2.0": [frozenset({"apache"})],
    "GNU Lesser General Public License (LGPL)": [frozenset({"lgpl"})],
    "MIT": [frozenset({"mit"})],
    "LGPL": [frozenset({"lgpl"})],
    "IJG, modified 3-clause BSD and zlib": [frozenset({"bsd", "other"})],
    "BSD-3-Clause": [frozenset({"bsd"})],
}


def license_alternatives(rec: dict[str, Any]) -> list[frozenset[str]]:
    family = rec.get("license_family")
    if family:
        return FAMILY[family]
    return LICENSE[rec.get("license")]


def license_ok(rec: dict[str, Any], families: set[str], mode: str) -> bool:
    alts = license_alternatives(rec)
    if mode == "not_in":
        return any(not (alt & families) for alt in alts)
    return any(alt <= families for alt in alts)


# ------------------------------------------------------------------------------------ fixtures


# CVSS 3.1 vectors of the base scores the tests use (scored with the `cvss` library).
VECTORS = {
    2.0: "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N",
    5.0: "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:N/A:N",
    7.0: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:L/A:L",
    7.5: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
    8.1: "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:N",
    9.8: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    9.9: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:L/A:L",
    10.0: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
}


@dataclass
class KnownVulns:
    """The tests' own record of the vulnerability data, ``scores[(name, version)] = [(score,
    status), ...]``, made real: each pair is one OSV advisory (written into a ``file://`` feed
    folder, synced through the API) for that exact conda version, and a status other than
    ``reported`` is a curation of that version through the API."""

    live: LiveServer
    folder: Path
    scores: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)
    feed: str | None = None

    def update(self, entries: dict[tuple[str, str], list[tuple[float, str]]]) -> None:
        curations: list[tuple[str, str, str, str]] = []
        for (name, version), pairs in entries.items():
            known = self.scores.get((name, version))
            if known is not None:
                assert sorted(known) == sorted(pairs), f"{name} {version} changed: {known}"
                continue
            self.scores[(name, version)] = list(pairs)
            for i, (score, status) in enumerate(pairs):
                vid = f"STK-TEST-{re.sub(r'[^A-Za-z0-9]', '-', name)}-{version}-{i}"
                self._write(vid, name, version, score)
                if status != "reported":
                    curations.append((vid, name, version, status))
        self._sync()
        client = admin(self.live)
        for vid, name, version, status in curations:
            body = {"package": name, "version": version, "status": status, "note": "test data"}
            response = client.post(f"/api/v1/cves/{vid}/curations", json=body)
            assert response.status_code == 201, response.text

    def _write(self, vid: str, name: str, version: str, score: float) -> None:
        record = {
            "id": vid,
            "modified": "2024-01-01T00:00:00Z",
            "summary": f"test advisory of {name} {version}",
            "severity": [{"type": "CVSS_V3", "score": VECTORS[score]}],
            "affected": [
                {
                    "package": {"ecosystem": "conda", "name": name, "purl": f"pkg:conda/{name}"},
                    "versions": [version],
                }
            ],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{vid}.json").write_text(json.dumps(record))

    def _sync(self) -> None:
        client = admin(self.live)
        if self.feed is None:
            self.feed = unique("test-feed")
            body = {"name": self.feed, "url": self.folder.as_uri(), "format": "osv"}
            response = client.post("/api/v1/cve/feeds", json=body)
            assert response.status_code == 201, response.text
        response = client.post(f"/api/v1/cve/feeds/{self.feed}/sync")
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 120
        while True:
            feed = client.get(response.headers["location"]).json()
            if feed["last_status"] != "queued":
                break
            assert time.monotonic() < deadline, feed
            time.sleep(0.05)
        assert feed["last_status"] == "ok", feed


_KNOWN: dict[str, KnownVulns] = {}


def known_vulns(live: LiveServer, root: Path) -> KnownVulns:
    """One record per server (every mirror of the server sees the same data)."""
    found = _KNOWN.get(live.url)
    if found is None:
        found = _KNOWN[live.url] = KnownVulns(live, root.parent / unique("osv-feed"))
    return found


@dataclass
class Mirrored:
    live: LiveServer
    mirror: str
    channel: str
    up: Records
    subdirs: list[str]
    vulns: KnownVulns
    policy: str | None = None  # the one assigned now


@pytest.fixture(scope="module", params=backends())
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp(f"mirror-policies-{request.param}")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, mirror={"heartbeat_s": 0.2}) as server,
    ):
        yield server


def _mirrored(live: LiveServer, root: Path, layout: dict[str, Path | None]) -> Mirrored:
    up = lay_out(root, layout)
    subdirs = list(layout)
    mirror = make_mirror(live, source=root.as_uri(), mode="passive", subdirs=subdirs)
    vulns = known_vulns(live, root)
    # Dry runs read the last run's upstream records (never the upstream): run once first.
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    return Mirrored(live, mirror["name"], mirror["channel"], up, subdirs, vulns=vulns)


@pytest.fixture(scope="module")
def r_mirror(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Mirrored:
    root = tmp_path_factory.mktemp("r-upstream")
    return _mirrored(
        live,
        root,
        {
            "linux-64": R_LINUX_64,
            "noarch": TEST_RECIPES / "noarch" / "repodata.json",
            "linux-fake": TEST_RECIPES / "linux-fake" / "repodata.json",
        },
    )


@pytest.fixture(scope="module")
def pytorch_mirror(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Mirrored:
    root = tmp_path_factory.mktemp("pytorch-upstream")
    return _mirrored(live, root, {"linux-64": PYTORCH_LINUX_64, "noarch": None})


@pytest.fixture(scope="module")
def signed_mirror(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Mirrored:
    root = tmp_path_factory.mktemp("signed-upstream")
    source = TESTDATA / "repodata" / "conda-forge-numpy-signed" / "repodata.json"
    return _mirrored(live, root, {"linux-64": source, "noarch": None})


# ----------------------------------------------------------------------------------- the check


def spec_of(rec: dict[str, Any]) -> str:
    return f"{rec['name']} {rec['version']} {rec['build']}"


def why(m: Mirrored, subdir: str, filename: str) -> dict[str, Any]:
    rec = m.up[subdir][filename]
    found = [
        e for e in explain(m.live, m.channel, spec_of(rec), subdir) if e["filename"] == filename
    ]
    assert len(found) == 1, found
    return found[0]


def apply_policy(
    m: Mirrored,
    definition: dict[str, Any],
    kept: set[tuple[str, str]],
    *,
    counts: dict[str, int] | None = None,
    criterion: str,
    excepted: set[tuple[str, str]],
) -> dict[str, Any]:
    """Assign a new policy made of ``definition`` (replacing the previous one), dry-run it, run
    the mirror, and check the dry run, the published index and explanations against ``kept``.
    ``counts`` (default: every excluded record under ``criterion``) are the dry run's per-reason
    counts by criterion; ``excepted`` are records the exception keeps against the criterion."""
    live = m.live
    if m.policy is not None:
        unassign(live, m.policy, mirror=m.mirror)
        m.policy = None
    name = make_policy(live, definition)
    universe = every(m.up)
    excluded = universe - kept
    assert kept, "a test policy keeps something"
    assert excluded, "a test policy excludes something"
    assert excepted, "the exception overrides the criterion for some record"
    assert excepted <= kept
    expected_counts = counts if counts is not None else {criterion: len(excluded)}

    # Dry run against what the channel holds now (the previous policy's result).
    before = published_names(live, m.channel, m.subdirs)
    have = {(sd, fn) for sd, fns in before.items() for fn in fns}
    preview = dry_run(live, name, m.channel)
    assert [p["mirror"] for p in preview["mirrors"]] == [m.mirror]
    totals = preview["mirrors"][0]["totals"]
    assert totals["upstream"] == len(universe)
    assert totals["kept"] == len(kept)
    assert totals["excluded"] == len(excluded)
    assert totals["by_reason"] == {f"{name}: {c}": n for c, n in expected_counts.items()}
    assert totals["would_add"] == len(kept - have)
    assert totals["would_remove"] == len(have - kept)

    assign(live, name, mirror=m.mirror)
    m.policy = name
    run = run_mirror(live, m.mirror, channel=m.channel)
    counts_now = run["counts"]
    assert counts_now["kept"] == len(kept), counts_now
    assert counts_now["excluded"] == len(excluded), counts_now
    assert counts_now["added"] == len(kept - have), counts_now
    assert counts_now["removed"] == len(have - kept), counts_now

    want = per_subdir(kept, m.subdirs)
    after = settled(live, m.channel, m.subdirs, want)
    for sd in m.subdirs:
        extra, missing = after[sd] - want[sd], want[sd] - after[sd]
        assert not extra and not missing, (
            f"{sd}: {len(extra)} published but excluded ({sorted(extra)[:5]}), "
            f"{len(missing)} kept but missing ({sorted(missing)[:5]})"
        )

    # Explanations: an excluded record names the rule, a kept one says kept (and is served).
    sd, fn = sorted(excluded)[0]
    found = why(m, sd, fn)
    assert found["kept"] is False and found["in_channel"] is False
    criteria = {(r["policy"], r["criterion"]) for r in found["reasons"]}
    assert criteria & {(name, c) for c in expected_counts}, found
    for sd, fn in (sorted(kept - excepted)[:1] or []) + sorted(excepted)[:1]:
        found = why(m, sd, fn)
        assert found["kept"] is True and found["reasons"] == [], found
        assert found["in_channel"] is True, found
    saved = why(m, *sorted(excepted)[0])
    assert any(e.startswith(f"{name}: ") for e in saved["exceptions"]), saved
    return run


# --------------------------------------------------------------------------------------- tests


def test_exclude_specs(r_mirror: Mirrored) -> None:
    m = r_mirror
    specs = ["r-rcpp*", "r-base <3.5", "dependency 1.*"]
    exceptions = ["r-rcppeigen >=0.3.3"]
    dropped = matching(m.up, specs) - matching(m.up, exceptions)
    kept = every(m.up) - dropped
    excepted = matching(m.up, specs) & matching(m.up, exceptions)
    assert any(fn.startswith("r-rcpparmadillo") for _, fn in dropped), "the glob matched"
    apply_policy(
        m,
        {"exclude_specs": specs, "exceptions": exceptions},
        kept,
        criterion="exclude_specs",
        excepted=excepted,
    )


def test_only_specs(r_mirror: Mirrored) -> None:
    m = r_mirror
    specs = ["r-ggplot2 >=2.2", "r-base 3.4.*", "dependent"]
    exceptions = ["arch-package"]
    kept = matching(m.up, specs) | matching(m.up, exceptions)
    apply_policy(
        m,
        {"only_specs": specs, "exceptions": exceptions},
        kept,
        criterion="only_specs",
        excepted=matching(m.up, exceptions),
    )


def test_include_dependencies_with_only_specs(r_mirror: Mirrored) -> None:
    m = r_mirror
    specs = ["r-ggplot2 2.2.1", "another_dependent 2.0"]
    exceptions = ["r-shiny 1.1.0"]
    kept = matching(m.up, specs) | matching(m.up, exceptions)
    todo = list(kept)
    while todo:  # closure: every record satisfying a dependency of a kept one
        sd, fn = todo.pop()
        for dep in m.up[sd][fn].get("depends", []):
            for csd, cfn, crec in candidates(m.up, sd, dep_name(dep)):
                if (csd, cfn) not in kept and matches(dep, csd, crec):
                    kept.add((csd, cfn))
                    todo.append((csd, cfn))
    base = matching(m.up, specs) | matching(m.up, exceptions)
    assert any(fn.startswith("r-base-") for _, fn in kept - base), "dependencies were added"
    assert ("noarch", "dependency-1.0-0.conda") in kept, "a noarch closure"
    assert ("noarch", "dependency-2.0-0.conda") in kept
    run = apply_policy(
        m,
        {"only_specs": specs, "include_dependencies": True, "exceptions": exceptions},
        kept,
        criterion="only_specs",
        excepted=matching(m.up, exceptions),
    )
    assert run["counts"]["kept"] > len(base)


def test_platforms_in_keeps_unnamed_noarch(r_mirror: Mirrored) -> None:
    m = r_mirror
    exceptions = ["virtualdep-package 2.*"]
    kept = {(sd, fn) for sd, fn in every(m.up) if sd in ("linux-64", "noarch")} | matching(
        m.up, exceptions
    )
    apply_policy(
        m,
        {"platforms": ["linux-64"], "platforms_mode": "in", "exceptions": exceptions},
        kept,
        criterion="platforms",
        excepted=matching(m.up, exceptions),
    )


def test_licenses_not_in_from_family_and_license(r_mirror: Mirrored) -> None:
    m = r_mirror
    families = {"gpl3", "agpl"}
    exceptions = ["r-mass >=7.3_47"]
    ok = {(sd, fn) for sd, fn in every(m.up) if license_ok(m.up[sd][fn], families, "not_in")}
    kept = ok | matching(m.up, exceptions)
    linux = m.up["linux-64"]
    no_family = {fn for fn, rec in linux.items() if not rec.get("license_family")}
    assert {fn for fn in no_family if ("linux-64", fn) not in ok}, "some dropped by `license`"
    assert {fn for fn in no_family if ("linux-64", fn) in ok}, "some kept by `license`"
    excepted = matching(m.up, exceptions) - ok
    apply_policy(
        m,
        {"licenses": sorted(families), "licenses_mode": "not_in", "exceptions": exceptions},
        kept,
        criterion="licenses",
        excepted=excepted,
    )
    gpl3_family = next(fn for fn, r in sorted(linux.items()) if r.get("license_family") == "GPL3")
    assert "gpl3" in str(why(m, "linux-64", gpl3_family)["reasons"])


def test_date_window(r_mirror: Mirrored) -> None:
    m = r_mirror
    start = datetime(2018, 1, 1, tzinfo=UTC)
    end = datetime(2018, 6, 30, 23, 59, 59, tzinfo=UTC)
    exceptions = ["r-base"]

    def inside(rec: dict[str, Any]) -> bool:
        ts = seconds(rec)  # no timestamp: not provably inside the window
        return ts is not None and start.timestamp() <= ts <= end.timestamp()

    ok = {(sd, fn) for sd, fn in every(m.up) if inside(m.up[sd][fn])}
    kept = ok | matching(m.up, exceptions)
    undated = {fn for fn, rec in m.up["linux-64"].items() if seconds(rec) is None}
    assert undated and not undated & per_subdir(ok, m.subdirs)["linux-64"]
    apply_policy(
        m,
        {
            "date_from": start.isoformat(),
            "date_to": end.isoformat(),
            "exceptions": exceptions,
        },
        kept,
        criterion="date_window",
        excepted=matching(m.up, exceptions) - ok,
    )


def test_cooldown(r_mirror: Mirrored) -> None:
    m = r_mirror
    # A cut-off in the widest gap between record dates after 2018-05-01, so the seconds between
    # computing it here and the server's evaluation cannot move a record across it.
    stamps = sorted(
        {s for recs in m.up.values() for r in recs.values() if (s := seconds(r)) is not None}
    )
    gaps = [(b - a, a, b) for a, b in itertools.pairwise(stamps) if a > 1525132800]
    _, low, high = max(gaps)
    cutoff = (low + high) / 2
    days = (time.time() - cutoff) / 86400
    exceptions = ["dependency"]

    def cooled(rec: dict[str, Any]) -> bool:
        ts = seconds(rec)  # no timestamp: passes (repodata older than timestamps)
        return ts is None or ts <= cutoff

    ok = {(sd, fn) for sd, fn in every(m.up) if cooled(m.up[sd][fn])}
    kept = ok | matching(m.up, exceptions)
    apply_policy(
        m,
        {"cooldown_days": days, "exceptions": exceptions},
        kept,
        criterion="cooldown",
        excepted=matching(m.up, exceptions) - ok,
    )


def test_keep_latest(r_mirror: Mirrored) -> None:
    m = r_mirror
    n = 2
    exceptions = ["r-base 3.1.2"]
    ok: set[tuple[str, str]] = set()
    for sd, recs in m.up.items():
        versions: dict[str, set[str]] = defaultdict(set)
        for rec in recs.values():
            versions[rec["name"]].add(rec["version"])
        newest = {
            name: set(sorted(vs, key=Version, reverse=True)[:n]) for name, vs in versions.items()
        }
        ok |= {(sd, fn) for fn, rec in recs.items() if rec["version"] in newest[rec["name"]]}
    kept = ok | matching(m.up, exceptions)
    apply_policy(
        m,
        {"keep_latest": n, "exceptions": exceptions},
        kept,
        criterion="keep_latest",
        excepted=matching(m.up, exceptions) - ok,
    )
    r_base = {
        m.up["linux-64"][fn]["version"]
        for sd, fn in kept
        if sd == "linux-64" and fn.startswith("r-base-")
    }
    assert r_base == {"3.5.0", "3.4.3", "3.1.2"}


def test_prune_unsatisfiable(r_mirror: Mirrored) -> None:
    m = r_mirror
    specs = ["r-rcpp"]
    exceptions = ["r-rcppeigen 0.3.3.4.0"]  # depends on r-rcpp: not pruned, being an exception
    names = {rec["name"] for recs in m.up.values() for rec in recs.values()}
    dropped = matching(m.up, specs)
    kept = every(m.up) - dropped
    protected = matching(m.up, exceptions)
    satisfying: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (subdir, dep) -> records
    needs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for sd, fn in every(m.up):
        for dep in m.up[sd][fn].get("depends", []):
            name = dep_name(dep)
            if name.startswith("__") or name not in names:
                continue  # virtual, or provided by another channel
            if (sd, dep) not in satisfying:
                satisfying[(sd, dep)] = {
                    (csd, cfn)
                    for csd, cfn, crec in candidates(m.up, sd, name)
                    if matches(dep, csd, crec)
                }
            needs.setdefault((sd, fn), []).append((sd, dep))
    pruned: set[tuple[str, str]] = set()
    changed = True
    while changed:  # to a fixpoint
        changed = False
        for key in sorted(kept - protected):
            if any(not (satisfying[need] & kept) for need in needs.get(key, [])):
                kept.discard(key)
                pruned.add(key)
                changed = True
    assert ("noarch", "unsatisfiable-1.0-0.conda") in pruned
    assert any(fn.startswith("r-rcpparmadillo") for _, fn in pruned)
    assert protected <= kept
    run = apply_policy(
        m,
        {"exclude_specs": specs, "prune_unsatisfiable": True, "exceptions": exceptions},
        kept,
        counts={"exclude_specs": len(dropped), "prune_unsatisfiable": len(pruned)},
        criterion="prune_unsatisfiable",
        excepted=protected,
    )
    assert run["counts"]["excluded"] == len(dropped) + len(pruned)
    found = why(m, "noarch", "unsatisfiable-1.0-0.conda")
    assert [r["criterion"] for r in found["reasons"]] == ["prune_unsatisfiable"]
    assert "versioned <1.0" in found["reasons"][0]["detail"]


def _first(m: Mirrored, name: str, version: str) -> tuple[str, str]:
    return next(
        ("linux-64", fn)
        for fn, rec in sorted(m.up["linux-64"].items())
        if rec["name"] == name and rec["version"] == version
    )


def test_cve_score(r_mirror: Mirrored) -> None:
    m = r_mirror
    m.vulns.update(
        {
            ("r-base", "3.4.3"): [(7.0, "active")],  # not > 7
            ("r-rcpp", "0.12.17"): [(9.8, "reported")],
            ("r-ggplot2", "2.2.1"): [(9.9, "mitigated")],  # status not counted
            ("r-data.table", "1.11.4"): [(8.1, "active"), (2.0, "reported")],
            ("r-shiny", "1.1.0"): [(10.0, "active")],
            ("dependency", "2.0"): [(7.5, "active")],
        }
    )
    exceptions = ["r-shiny"]
    vulnerable = {
        ("r-rcpp", "0.12.17"),
        ("r-data.table", "1.11.4"),
        ("r-shiny", "1.1.0"),
        ("dependency", "2.0"),
    }
    bad = {
        (sd, fn)
        for sd, fn in every(m.up)
        if (m.up[sd][fn]["name"], m.up[sd][fn]["version"]) in vulnerable
    }
    kept = every(m.up) - bad | matching(m.up, exceptions)
    apply_policy(
        m,
        {"cve_score": {"threshold": 7.0, "operator": ">"}, "exceptions": exceptions},
        kept,
        criterion="cve_score",
        excepted=bad & matching(m.up, exceptions),
    )
    sd, fn = _first(m, "r-rcpp", "0.12.17")
    assert "9.8" in why(m, sd, fn)["reasons"][0]["detail"]


def test_uncurated_cves(r_mirror: Mirrored) -> None:
    m = r_mirror
    m.vulns.update(
        {
            ("r-rcpp", "0.12.17"): [(9.8, "reported")],
            ("r-data.table", "1.11.4"): [(8.1, "active"), (2.0, "reported")],
            ("r-base", "3.4.3"): [(7.0, "active")],
            ("r-mass", "7.3_49"): [(2.0, "reported")],
        }
    )
    exceptions = ["r-mass"]
    bad = {
        (sd, fn)
        for sd, fn in every(m.up)
        if any(
            st == "reported"
            for _, st in m.vulns.scores.get((m.up[sd][fn]["name"], m.up[sd][fn]["version"]), ())
        )
    }
    kept = every(m.up) - bad | matching(m.up, exceptions)
    apply_policy(
        m,
        {"uncurated_cves": True, "exceptions": exceptions},
        kept,
        criterion="uncurated_cves",
        excepted=bad & matching(m.up, exceptions),
    )


def test_new_vulnerability_data_takes_effect_at_the_next_run(r_mirror: Mirrored) -> None:
    """SPEC §6: policies take effect at the next run; with the upstream and the policy unchanged,
    a vulnerability newly known (or newly curated) must still change what the run keeps."""
    m = r_mirror
    if m.policy is not None:
        unassign(m.live, m.policy, mirror=m.mirror)
    m.policy = make_policy(m.live, {"uncurated_cves": True})
    assign(m.live, m.policy, mirror=m.mirror)
    run_mirror(m.live, m.mirror, channel=m.channel)
    target = {fn for fn, r in m.up["linux-64"].items() if r["name"] == "r-plyr"}
    version = m.up["linux-64"][sorted(target)[0]]["version"]
    hit = {fn for fn in target if m.up["linux-64"][fn]["version"] == version}
    assert hit <= set(published_names(m.live, m.channel, ["linux-64"])["linux-64"])
    m.vulns.update({("r-plyr", version): [(5.0, "reported")]})
    run = run_mirror(m.live, m.mirror, channel=m.channel)
    assert run["summary"] != "unchanged", run
    assert run["counts"]["removed"] == len(hit), run["counts"]
    served = published_names(m.live, m.channel, ["linux-64"])["linux-64"]
    assert not hit & served


def test_cve_statuses_of_the_spec_are_accepted(live: LiveServer) -> None:
    """SPEC §7 curation statuses are reported, active, mitigated, cleared, disputed."""
    for statuses in (["cleared"], ["disputed"], ["mitigated", "active"]):
        body = {
            "name": unique("cve"),
            "definition": {"cve_score": {"threshold": 5, "statuses": statuses}},
        }
        response = admin(live).post("/api/v1/policies", json=body)
        assert response.status_code == 201, (statuses, response.text)


def test_platforms_not_in_names_noarch(r_mirror: Mirrored) -> None:
    m = r_mirror
    exceptions = ["r-base >=3.5", "versioned"]
    kept = {(sd, fn) for sd, fn in every(m.up) if sd == "linux-fake"} | matching(m.up, exceptions)
    apply_policy(
        m,
        {
            "platforms": ["linux-64", "noarch"],
            "platforms_mode": "not_in",
            "exceptions": exceptions,
        },
        kept,
        criterion="platforms",
        excepted=matching(m.up, exceptions),
    )


def test_licenses_in_from_spdx_license(pytorch_mirror: Mirrored) -> None:
    """pytorch: most records have no license_family, only an SPDX `license`."""
    m = pytorch_mirror
    families = {"bsd"}
    recs = m.up["linux-64"]
    mit_name = sorted(r["name"] for r in recs.values() if r.get("license_family") == "MIT")[0]
    exceptions = [mit_name]
    ok = {(sd, fn) for sd, fn in every(m.up) if license_ok(m.up[sd][fn], families, "in")}
    kept = ok | matching(m.up, exceptions)
    by_license = {fn for fn, r in recs.items() if not r.get("license_family")}
    assert {fn for fn in by_license if ("linux-64", fn) in ok}, "kept by an SPDX license"
    assert {fn for fn in by_license if ("linux-64", fn) not in ok}, "dropped by an SPDX license"
    apply_policy(
        m,
        {"licenses": ["bsd"], "licenses_mode": "in", "exceptions": exceptions},
        kept,
        criterion="licenses",
        excepted=matching(m.up, exceptions) - ok,
    )
    lgpl = next(
        fn
        for fn, r in sorted(recs.items())
        if r.get("license") == "LGPL" and not r.get("license_family")
    )
    assert "lgpl" in why(m, "linux-64", lgpl)["reasons"][0]["detail"]


def test_signed_only_without_a_trusted_root_keeps_nothing(signed_mirror: Mirrored) -> None:
    """The `signatures` entries of this repodata are not even hex, and the mirror has no trusted
    root: "signed only" (accepted since issue 14) keeps no record, and each exclusion says why
    (tests/functional/test_mirror_signatures.py has an upstream whose signatures verify)."""
    m = signed_mirror
    client = admin(m.live)
    signed = {"signed_only": True}
    response = client.post(
        "/api/v1/policies/dry-run", json={"channel": m.channel, "definition": signed}
    )
    assert response.status_code == 200, response.text
    totals = response.json()["mirrors"][0]["totals"]
    assert totals["kept"] == 0, totals
    doc = json.loads(
        (TESTDATA / "repodata" / "conda-forge-numpy-signed" / "repodata.json").read_bytes()
    )
    garbage = set(doc["signatures"])
    served = published_names(m.live, m.channel, ["linux-64"])["linux-64"]
    assert served >= garbage  # no policy assigned: the channel holds them like every other record
    one = next(iter(sorted(garbage)))
    notes = why(m, "linux-64", one)["notes"]
    # these records name their upstream url and fn, which Stockade leaves out
    assert len(notes) == 1 and notes[0].startswith("upstream signature dropped: "), notes
    assert "(fn, url)" in notes[0]


def test_no_link_scripts_active(live: LiveServer, tmp_path: Path) -> None:
    """An ACTIVE mirror downloads every file: packages with post-link scripts must be dropped."""
    root = tmp_path / "recipes"
    shutil.copytree(TEST_RECIPES / "noarch", root / "noarch")
    mirror = make_mirror(live, source=root.as_uri(), mode="active", subdirs=["noarch"])
    name = make_policy(live, {"no_link_scripts": True, "exceptions": ["post_link-e"]})
    assign(live, name, mirror=mirror["name"])
    run = run_mirror(live, mirror["name"], channel=mirror["channel"])
    with_scripts = {
        "post_link-c-1.0-0.conda",
        "post_link-d-1.0-0.conda",
        "failing_post_link-1.0-0.conda",
        "post_link_run_in_env_package-1.0-0.conda",
    }
    served = published_names(live, mirror["channel"], ["noarch"])["noarch"]
    assert "post_link-e-1.0-0.conda" in served, "the exception keeps it"
    assert "dependency-1.0-0.conda" in served
    assert not (served & with_scripts), (
        f"served with link scripts: {sorted(served & with_scripts)}; counts {run['counts']}"
    )
