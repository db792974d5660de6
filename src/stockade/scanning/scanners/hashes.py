"""The known-bad list: artifact and file hashes, and package names (with a version or all versions).

The list is fed like the vulnerability feeds (including OSV ``MAL-`` malicious-package advisories,
mapped to conda names through the name map); the caller stores it and hands this scanner an
immutable :class:`KnownBadList` snapshot. The scanner is pure: :meth:`HashListScanner.finish`
checks the artifact's sha256 and its name and version, :meth:`~HashListScanner.scan_member` the
sha256 of each whole member (a known-bad file shipped inside a package). ``version`` is a digest
of the snapshot, so a new list triggers rescans.

:func:`parse_osv_malicious` reads one OSV record (schema 1.x) into :class:`MaliciousRecord`\\ s:
ecosystem, name, the versions (None: all), and the sha256 of the malicious files when the record
gives them in ``database_specific`` (as the OpenSSF malicious-packages records do under
``malicious-packages-origins``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stockade.scanning.interfaces import Finding, Member, ScanSubject, Verdict

__all__ = [
    "HashListScanner",
    "KnownBadList",
    "MaliciousRecord",
    "OsvRecordError",
    "known_bad_list",
    "parse_osv_malicious",
]

CODE_REVISION: Final = 1  # bump when matching or findings change without a list change
SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
MAX_DEPTH: Final = 6  # of database_specific searched for hashes


def _normalise_hash(value: str) -> str | None:
    text = value.strip().lower().removeprefix("sha256:")
    return text if SHA256.match(text) else None


@dataclass(frozen=True)
class KnownBadList:
    """An immutable snapshot of the list.

    ``sha256s``: lowercase hex of known-bad artifacts or files; ``packages``: ``(conda name,
    version)`` pairs, version None for every version; ``labels``: why, by hash or by
    ``name``/``name==version`` (an advisory id such as ``MAL-2024-1234``), shown as evidence.
    """

    sha256s: frozenset[str] = frozenset()
    packages: frozenset[tuple[str, str | None]] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hashes = {_normalise_hash(h) for h in self.sha256s}
        if None in hashes:
            raise ValueError("sha256s must be 64 hexadecimal digits")
        object.__setattr__(self, "sha256s", frozenset(h for h in hashes if h))
        names = frozenset((name.strip().lower(), version) for name, version in self.packages)
        object.__setattr__(self, "packages", names)

    @property
    def digest(self) -> str:
        digest = hashlib.sha256(f"stockade-hashes/{CODE_REVISION}\n".encode())
        for sha in sorted(self.sha256s):
            digest.update(f"h {sha}\n".encode())
        for name, version in sorted(self.packages, key=lambda p: (p[0], p[1] or "")):
            digest.update(f"p {name} {'*' if version is None else version}\n".encode())
        for key in sorted(self.labels):
            digest.update(f"l {key}\0{self.labels[key]}\n".encode())
        return digest.hexdigest()[:24]


class HashListScanner:
    """Findings for an artifact, a member or a package name on the known-bad list (all malicious)."""

    name = "hashes"

    def __init__(self, snapshot: KnownBadList | None = None) -> None:
        self.snapshot = snapshot or KnownBadList()
        self._version = self.snapshot.digest

    @property
    def version(self) -> str:
        return self._version

    def wants(self, path: str) -> bool:
        return bool(self.snapshot.sha256s)

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        if member.truncated or not self.snapshot.sha256s:
            return ()  # only a whole file has the listed hash
        sha = hashlib.sha256(member.data).hexdigest()
        if sha not in self.snapshot.sha256s:
            return ()
        return (self._finding("known-bad-file", member.path, sha, {"sha256": sha}),)

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        found: list[Finding] = []
        sha = subject.sha256.strip().lower()
        if sha in self.snapshot.sha256s:
            found.append(self._finding("known-bad-artifact", None, sha, {"sha256": sha}))
        name = subject.name.strip().lower()
        version = str(subject.index.get("version") or "") or None
        for key in ((name, version), (name, None)):
            if key in self.snapshot.packages:
                label = name if key[1] is None else f"{name}=={key[1]}"
                details = {"name": name, "version": key[1] or "*"}
                found.append(self._finding("malicious-package", None, label, details))
                break
        return found

    def _finding(self, rule: str, member: str | None, key: str, details: dict[str, Any]) -> Finding:
        label = self.snapshot.labels.get(key)
        if label:
            details["source"] = label
        what = {
            "known-bad-file": f"file sha256 {key}",
            "known-bad-artifact": f"package sha256 {key}",
            "malicious-package": f"package {key}",
        }[rule]
        evidence = f"{what} is on the known-bad list" + (f" ({label})" if label else "")
        return Finding(
            scanner=self.name,
            rule=f"hashes:{rule}",
            verdict=Verdict.MALICIOUS,
            member=member,
            evidence=evidence[:200],
            details=details,
        )


# --- OSV MAL- records -------------------------------------------------------------------------


class OsvRecordError(ValueError):
    """An OSV record that cannot be read (the message names the field)."""


@dataclass(frozen=True)
class MaliciousRecord:
    """One affected package of a malicious-package advisory.

    ``versions`` is None when every version is malicious (an open range, or a range that cannot be
    enumerated: fail closed); ``sha256s`` are the malicious files' hashes the record gives, if any.
    """

    advisory: str
    ecosystem: str
    name: str
    versions: frozenset[str] | None
    sha256s: frozenset[str]
    summary: str = ""


def known_bad_list(
    records: Iterable[MaliciousRecord],
    conda_names: Callable[[str, str], Iterable[str]],
    *,
    sha256s: Iterable[str] = (),
) -> KnownBadList:
    """The snapshot for :class:`HashListScanner` from parsed advisories.

    ``conda_names(ecosystem, name)`` gives the conda names of an advisory's package (the caller's
    name map: ``PyPI``/``requests`` -> ``{"requests"}``; none: the advisory is not about conda).
    Versions are kept as the advisory spells them; every hash it gives is listed; ``sha256s`` adds
    hashes from other lists. Labels name the advisories (several joined by ``, ``).
    """
    hashes = {h for h in (_normalise_hash(s) for s in sha256s) if h}
    packages: set[tuple[str, str | None]] = set()
    labels: dict[str, set[str]] = {}
    for record in records:
        for sha in record.sha256s:
            hashes.add(sha)
            labels.setdefault(sha, set()).add(record.advisory)
        for conda in {n.strip().lower() for n in conda_names(record.ecosystem, record.name)}:
            versions: Iterable[str | None] = (
                [None] if record.versions is None else sorted(record.versions)
            )
            for version in versions:
                packages.add((conda, version))
                key = conda if version is None else f"{conda}=={version}"
                labels.setdefault(key, set()).add(record.advisory)
    return KnownBadList(
        sha256s=frozenset(hashes),
        packages=frozenset(packages),
        labels={key: ", ".join(sorted(ids)) for key, ids in labels.items()},
    )


def _is_malicious(record: Mapping[str, Any]) -> bool:
    ids = [record.get("id"), *(record.get("aliases") or [])]
    return any(isinstance(i, str) and i.startswith("MAL-") for i in ids)


def parse_osv_malicious(record: Any) -> list[MaliciousRecord]:
    """The malicious packages an OSV record names; [] for a record that is not ``MAL-`` or was
    withdrawn. Raises :class:`OsvRecordError` for a record that does not follow the schema."""
    if not isinstance(record, Mapping):
        raise OsvRecordError("an OSV record is a JSON object")
    advisory = record.get("id")
    if not isinstance(advisory, str) or not advisory:
        raise OsvRecordError("id: missing")
    if not _is_malicious(record) or record.get("withdrawn"):
        return []
    affected = record.get("affected")
    if not isinstance(affected, list):
        raise OsvRecordError(f"{advisory}: affected: a list is required")
    shared = frozenset(_hashes(record.get("database_specific"), 0))
    summary = str(record.get("summary") or "")[:500]
    return [_affected(advisory, i, entry, shared, summary) for i, entry in enumerate(affected)]


def _affected(
    advisory: str, index: int, entry: Any, shared: frozenset[str], summary: str
) -> MaliciousRecord:
    where = f"{advisory}: affected[{index}]"
    if not isinstance(entry, Mapping):
        raise OsvRecordError(f"{where}: an object is required")
    package = entry.get("package")
    if not isinstance(package, Mapping):
        raise OsvRecordError(f"{where}.package: an object is required")
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not ecosystem or not isinstance(name, str) or not name:
        raise OsvRecordError(f"{where}.package: ecosystem and name are required")
    return MaliciousRecord(
        advisory=advisory,
        ecosystem=ecosystem,
        name=name,
        versions=_versions(where, entry),
        sha256s=shared | frozenset(_hashes(entry.get("database_specific"), 0)),
        summary=summary,
    )


def _versions(where: str, entry: Mapping[str, Any]) -> frozenset[str] | None:
    listed = entry.get("versions") or []
    ranges = entry.get("ranges") or []
    if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
        raise OsvRecordError(f"{where}.versions: a list of strings is required")
    if not isinstance(ranges, list):
        raise OsvRecordError(f"{where}.ranges: a list is required")
    open_ranges = [_open_range(where, r) for r in ranges]  # each range checked
    if not listed or any(open_ranges):
        return None  # no list (only ranges, or nothing): every version, fail closed
    return frozenset(listed)


def _open_range(where: str, rng: Any) -> bool:
    """A range with an ``introduced`` and no ``fixed``/``last_affected``/``limit``: every later
    version (``introduced: "0"`` is every version)."""
    if not isinstance(rng, Mapping) or not isinstance(rng.get("events"), list):
        raise OsvRecordError(f"{where}.ranges: each range has a list of events")
    keys = {key for event in rng["events"] if isinstance(event, Mapping) for key in event}
    return "introduced" in keys and not keys & {"fixed", "last_affected", "limit"}


def _hashes(value: Any, depth: int) -> Iterator[str]:
    """Every ``sha256`` (a string) or ``sha256s`` (a list) value found in ``value``."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in ("sha256", "sha256s"):
                for text in [item] if isinstance(item, str) else item or []:
                    sha = _normalise_hash(text) if isinstance(text, str) else None
                    if sha:
                        yield sha
            else:
                yield from _hashes(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _hashes(item, depth + 1)
