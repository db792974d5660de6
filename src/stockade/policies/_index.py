"""Indexes of the policy engine: parsed MatchSpecs and the records by subdir, name and version.

Internal to :mod:`stockade.policies.engine` (see its docstring for the semantics).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from rattler import BuildString, MatchSpec, PackageRecord, Version, VersionSpec
from rattler.exceptions import (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    InvalidVersionSpecError,
    PackageNameMatcherParseError,
)

from stockade.policies.model import NOARCH

Record = Mapping[str, Any]
# subdir -> name (lower case) -> version text -> filenames, in record order
NameIndex = dict[str, dict[str, list[str]]]

RATTLER_ERRORS = (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    InvalidVersionSpecError,
    PackageNameMatcherParseError,
    ValueError,
    TypeError,
)

_VERSIONS: dict[str, Version | None] = {}
_VERSION_SPECS: dict[str, VersionSpec] = {}


def version(text: str) -> Version | None:
    try:
        return _VERSIONS[text]
    except KeyError:
        pass
    try:
        v: Version | None = Version(text)
    except RATTLER_ERRORS:  # unparsable upstream version: never matches, sorts lowest
        v = None
    if len(_VERSIONS) < 1_000_000:
        _VERSIONS[text] = v
    return v


def _version_spec(text: str) -> VersionSpec:
    vs = _VERSION_SPECS.get(text)
    if vs is None:
        vs = VersionSpec(text)
        _VERSION_SPECS[text] = vs
    return vs


def version_sort_key(text: str) -> tuple[int, Any]:
    v = version(text)
    return (0, text) if v is None else (1, _VersionKey(v))


class _VersionKey:
    __slots__ = ("v",)

    def __init__(self, v: Version) -> None:
        self.v = v

    def __lt__(self, other: _VersionKey) -> bool:
        return bool(self.v < other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _VersionKey) and bool(self.v == other.v)

    __hash__ = None  # type: ignore[assignment]


def _glob_re(pattern: str) -> re.Pattern[str]:
    if pattern.startswith("^") and pattern.endswith("$"):
        return re.compile(pattern)
    return re.compile(fnmatch.translate(pattern))


def _package_record(rec: Record, subdir: str) -> PackageRecord:
    return PackageRecord(
        name=str(rec.get("name", "")),
        version=str(rec.get("version", "0")),
        build=BuildString(str(rec.get("build", ""))),
        build_number=int(rec.get("build_number", 0) or 0),
        subdir=str(rec.get("subdir") or subdir),
        arch=rec.get("arch"),
        platform=rec.get("platform"),
        depends=list(rec.get("depends") or []),
        constrains=list(rec.get("constrains") or []),
        license=rec.get("license"),
        license_family=rec.get("license_family"),
        size=rec.get("size"),
    )


class Spec:
    """A parsed MatchSpec with cheap pre-filters (name bucket, cached version/build checks)."""

    __slots__ = (
        "_vcache",
        "build_re",
        "exact_name",
        "name_re",
        "slow",
        "spec",
        "text",
        "version_spec",
    )

    def __init__(self, text: str, *, lenient: bool = False) -> None:
        self.text = text
        # Parsed as conda reads them (``openssl 1.1.1w`` is ==1.1.1w); user specs may glob names.
        spec = MatchSpec(text) if lenient else MatchSpec(text, exact_names_only=False)
        self.spec = spec
        pkg = spec.name.as_package_name()
        self.exact_name: str | None = pkg.normalized if pkg is not None else None
        self.name_re: re.Pattern[str] | None = (
            None if pkg is not None else _glob_re(str(spec.name.normalized).lower())
        )
        plain = "[" not in text and "::" not in text
        self.slow = not plain or any(
            getattr(spec, attr) is not None
            for attr in ("build_number", "subdir", "channel", "file_name", "md5", "sha256")
        )
        self.version_spec: VersionSpec | None = (
            _version_spec(str(spec.version)) if spec.version is not None and not self.slow else None
        )
        self.build_re: re.Pattern[str] | None = (
            _glob_re(str(spec.build)) if spec.build is not None and not self.slow else None
        )
        self._vcache: dict[str, bool] = {}

    def names(self, index: Mapping[str, Any]) -> list[str]:
        if self.exact_name is not None:
            return [self.exact_name] if self.exact_name in index else []
        assert self.name_re is not None
        return [n for n in index if self.name_re.fullmatch(n)]

    def version_ok(self, vtext: str) -> bool:
        """The cached version check (fast path only; True when the spec has no version)."""
        if self.version_spec is None:
            return True
        ok = self._vcache.get(vtext)
        if ok is None:
            v = version(vtext)
            ok = v is not None and bool(self.version_spec.matches(v))
            self._vcache[vtext] = ok
        return ok

    def matches(self, rec: Record, subdir: str) -> bool:
        """Match a record already known to be in a name bucket this spec selects."""
        if self.slow:
            try:
                return bool(self.spec.matches(_package_record(rec, subdir)))
            except RATTLER_ERRORS:  # a record rattler cannot represent does not match
                return False
        if not self.version_ok(str(rec.get("version", ""))):
            return False
        return self.build_ok(rec)

    def build_ok(self, rec: Record) -> bool:
        """The build check of the fast path (the version is checked per version group)."""
        return (
            self.build_re is None or self.build_re.fullmatch(str(rec.get("build", ""))) is not None
        )


_MATCH_SPECS_PARSED: dict[str, Spec | None] = {}


def dep_spec(text: str) -> Spec | None:
    """A ``depends`` entry, parsed once per distinct string (None if rattler refuses it)."""
    try:
        return _MATCH_SPECS_PARSED[text]
    except KeyError:
        pass
    try:
        s: Spec | None = Spec(text, lenient=True)
    except RATTLER_ERRORS:
        s = None
    if len(_MATCH_SPECS_PARSED) < 1_000_000:
        _MATCH_SPECS_PARSED[text] = s
    return s


class Group:
    """The records of one name and one version text in one subdir (a spec's version is checked once per
    group); ``kept``/``watchers`` are the pruning state (see :func:`._deps.prune`)."""

    __slots__ = ("fns", "kept", "subdir", "version", "watchers")

    def __init__(self, subdir: str, version: str, fns: list[str]) -> None:
        self.subdir = subdir
        self.version = version
        self.fns = fns
        self.kept = 0
        self.watchers: list[Any] = []


def _index(recs: Mapping[str, Record]) -> tuple[NameIndex, bool]:
    """Name -> version -> filenames of one subdir in one pass; and whether every name was lower case.

    The key is ``str(name).lower()`` and ``str(version)`` of the record (as every criterion reads them).
    """
    idx: NameIndex = {}
    lower = True
    for fn, rec in recs.items():
        get = rec.get
        name = get("name", "")
        if name.__class__ is not str:
            name = str(name)
        if not name.islower():
            low = name.lower()
            if low != name:
                lower = False
            name = low
        ver = get("version", "")
        if ver.__class__ is not str:
            ver = str(ver)
        versions = idx.get(name)
        if versions is None:
            idx[name] = {ver: [fn]}
        else:
            fns = versions.get(ver)
            if fns is None:
                versions[ver] = [fn]
            else:
                fns.append(fn)
    return idx, lower


class Universe:
    """All records being evaluated, indexed by subdir, name and version (one pass over the records)."""

    def __init__(self, records: Mapping[str, Mapping[str, Record]]) -> None:
        self.records = records
        self.by_name: dict[str, NameIndex] = {}
        # Whether every record's name is already lower case (so the index key is the raw name).
        self.lower_names: dict[str, bool] = {}
        self.all_names: set[str] = set()
        for subdir, recs in records.items():
            self.by_name[subdir], self.lower_names[subdir] = _index(recs)
            self.all_names.update(self.by_name[subdir])
        self._dep_cache: dict[str, list[tuple[str, str]]] = {}
        self._groups: dict[str, dict[str, list[Group]]] = {sd: {} for sd in records}

    def groups(self, subdir: str, name: str) -> list[Group]:
        """The version groups of a name bucket, in first-seen order (built once per bucket)."""
        cache = self._groups[subdir]
        out = cache.get(name)
        if out is None:
            versions = self.by_name[subdir].get(name, {})
            out = cache[name] = [Group(subdir, v, fns) for v, fns in versions.items()]
        return out

    def select(self, spec: Spec, subdir: str) -> set[str]:
        idx = self.by_name[subdir]
        recs = self.records[subdir]
        out: set[str] = set()
        for name in spec.names(idx):
            versions = idx[name]
            if spec.slow:
                for fns in versions.values():
                    out.update(fn for fn in fns if spec.matches(recs[fn], subdir))
                continue
            for vtext, fns in versions.items():
                if not spec.version_ok(vtext):
                    continue
                if spec.build_re is None:
                    out.update(fns)
                else:
                    out.update(fn for fn in fns if spec.build_ok(recs[fn]))
        return out

    def external(self, spec: Spec | None) -> bool:
        """A depends entry taken as satisfied: unparsable, virtual, or a name absent upstream."""
        return spec is None or (
            spec.exact_name is not None
            and (spec.exact_name.startswith("__") or spec.exact_name not in self.all_names)
        )

    def satisfying(self, dep: str) -> list[tuple[str, str]] | None:
        """Every ``(subdir, fn)`` satisfying a depends entry; None = satisfied externally/virtually."""
        cached = self._dep_cache.get(dep)
        if cached is not None:
            return cached
        spec = dep_spec(dep)
        if spec is None or self.external(spec):
            return None
        out = [(sd, fn) for sd in self.records for fn in self.select(spec, sd)]
        self._dep_cache[dep] = out
        return out

    def eligible_subdirs(self, subdir: str) -> list[str]:
        """Where a record of ``subdir`` looks for its dependencies (see :func:`eligible`)."""
        return [sd for sd in self.records if eligible(subdir, sd)]


def eligible(rec_subdir: str, cand_subdir: str) -> bool:
    return rec_subdir == NOARCH or cand_subdir in (rec_subdir, NOARCH)
