"""The vulnerability model every feed parser produces (SPEC §7); pure values, no database.

A :class:`Vulnerability` carries what the three feed formats share: identity (id, aliases), text
(summary, details), dates, a withdrawn mark, CVSS scores, CWEs, references and :class:`Affected`
entries. An affected entry names a product in one of two ways, or both:

- a package of an ecosystem (``PyPI``/``requests``, with its purl when the feed gives one), from OSV
  and from CVE 5 ``collectionURL`` + ``packageName``;
- a CPE ``vendor:product`` pair (``openssl:openssl``), from NVD CPE matches and CVE 5
  ``vendor``/``product``/``cpes``.

Affected versions have one normalised shape, :class:`VersionRange`: an interval with an optional
start and end, each inclusive or exclusive, and a status. The feeds' forms map onto it:

=====================================  ==================================================
feed form                              interval
=====================================  ==================================================
OSV ``introduced: "0"``                no start
OSV ``introduced: X``                  start X inclusive
OSV ``fixed: X`` / ``limit: X``        end X exclusive
OSV ``last_affected: X``               end X inclusive
NVD ``versionStart(In|Ex)cluding``     start inclusive / exclusive
NVD ``versionEnd(In|Ex)cluding``       end inclusive / exclusive
CVE 5 ``version`` + ``lessThan``       start inclusive, end exclusive (``*``: no end)
CVE 5 ``version`` + ``lessThanOrEqual`` start inclusive, end inclusive
CVE 5 lone ``version`` with a status   start = end = version, both inclusive (:attr:`exact`)
=====================================  ==================================================

OSV event lists become one interval per ``introduced`` (evaluated in version order, see
``feeds.osv``). Explicit versions (OSV ``versions``, an NVD CPE with a concrete version) are kept in
:attr:`Affected.versions`; a CVE 5 lone ``version`` stays an exact range, as it carries a status. How
a conda version is tested against all this lives in :mod:`stockade.vulns.ranges`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Severity(StrEnum):
    """SPEC §7 bands of a CVSS base score."""

    NONE = "none"  # 0.0
    LOW = "low"  # 0.1-3.9
    MEDIUM = "medium"  # 4.0-6.9
    HIGH = "high"  # 7.0-8.9
    CRITICAL = "critical"  # 9.0-10.0

    @property
    def rank(self) -> int:
        """0 (none) to 4 (critical), to sort and compare bands."""
        return list(Severity).index(self)


def severity_band(score: float) -> Severity:
    """SPEC §7 band of a base score (0.0-10.0); scores are rounded to one decimal as CVSS does."""
    tenths = round(score * 10)
    if not 0 <= tenths <= 100:
        raise ValueError(f"a CVSS base score is between 0.0 and 10.0, not {score}")
    if tenths == 0:
        return Severity.NONE
    if tenths < 40:
        return Severity.LOW
    if tenths < 70:
        return Severity.MEDIUM
    if tenths < 90:
        return Severity.HIGH
    return Severity.CRITICAL


class CvssVersion(StrEnum):
    V2 = "2.0"
    V3_0 = "3.0"
    V3_1 = "3.1"
    V4 = "4.0"


class RangeKind(StrEnum):
    """How the bounds of a range are spelled.

    ``ecosystem``: the package ecosystem's own scheme (PyPI's PEP 440 for OSV PyPI advisories);
    ``semver``: semantic versioning (OSV SEMVER, CVE 5 ``versionType: semver``);
    ``custom``: a vendor's scheme (NVD CPE versions, CVE 5 ``custom`` and other version types).
    Git commit ranges are not kept (no conda version can be placed between two commits).
    """

    ECOSYSTEM = "ecosystem"
    SEMVER = "semver"
    CUSTOM = "custom"


class Status(StrEnum):
    """CVE 5 status of a version; OSV and NVD only state ``affected`` ranges."""

    AFFECTED = "affected"
    UNAFFECTED = "unaffected"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Score:
    """One CVSS assessment: ``base_score`` is computed from ``vector`` (see ``vulns.cvss``).

    ``stated_score`` is the score the feed printed beside the vector, kept to compare;
    ``source`` who scored it (``nvd@nist.gov``, a CNA or ADP short name, ``osv``).
    """

    version: CvssVersion
    vector: str
    base_score: float
    source: str = ""
    stated_score: float | None = None

    @property
    def severity(self) -> Severity:
        return severity_band(self.base_score)


@dataclass(frozen=True, slots=True)
class Reference:
    url: str
    tags: tuple[str, ...] = ()  # OSV reference type (``FIX``, ``WEB``), NVD/CVE 5 tags


@dataclass(frozen=True, slots=True)
class VersionRange:
    """An interval of versions with one status; ``None`` bounds are open."""

    kind: RangeKind = RangeKind.ECOSYSTEM
    start: str | None = None
    start_inclusive: bool = True
    end: str | None = None
    end_inclusive: bool = False
    status: Status = Status.AFFECTED

    @property
    def exact(self) -> bool:
        """True for a single version (CVE 5 lone ``version``)."""
        return (
            self.start is not None
            and self.start == self.end
            and self.start_inclusive
            and self.end_inclusive
        )


@dataclass(frozen=True, slots=True)
class Affected:
    """A product and its affected versions.

    Identify the product by ``ecosystem`` + ``name`` (OSV ecosystem names: ``PyPI``, ``npm``,
    ``crates.io``; ``purl`` when given) or by ``vendor`` + ``product`` (CPE spelling, lowercase, for
    NVD; CVE 5's free-text vendor and product lowercased with spaces as ``_``), plus any CPE strings
    of CVE 5 ``cpes``. ``default_status`` applies to versions no range or list mentions (CVE 5
    ``defaultStatus``; OSV and NVD: ``unaffected``).
    """

    ecosystem: str | None = None
    name: str | None = None
    purl: str | None = None
    vendor: str | None = None
    product: str | None = None
    cpes: tuple[str, ...] = ()
    ranges: tuple[VersionRange, ...] = ()
    versions: tuple[str, ...] = ()
    default_status: Status = Status.UNAFFECTED

    @property
    def cpe_pair(self) -> str | None:
        """``vendor:product`` when both are known."""
        if self.vendor and self.product:
            return f"{self.vendor}:{self.product}"
        return None


_V3 = (CvssVersion.V3_1, CvssVersion.V3_0)


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """One advisory or CVE record as a feed states it.

    ``withdrawn`` is set for OSV ``withdrawn``, NVD ``Rejected`` and CVE 5 ``REJECTED`` records (the
    time of withdrawal, or of the last change when the feed gives none). ``summary`` is the feed's own
    one-line title (OSV ``summary``, CVE 5 ``title``; NVD has none) and ``details`` its description.
    ``source`` names the feed format: ``osv``, ``nvd`` or ``cve5``.
    """

    id: str
    source: str
    aliases: tuple[str, ...] = ()
    summary: str = ""
    details: str = ""
    published: datetime | None = None
    modified: datetime | None = None
    withdrawn: datetime | None = None
    scores: tuple[Score, ...] = ()
    cwes: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()
    affected: tuple[Affected, ...] = field(default=())

    @property
    def is_withdrawn(self) -> bool:
        return self.withdrawn is not None

    def best_score(self) -> Score | None:
        """The CVSS v4 score, else v3.1, else v3.0, else v2; the first of a version wins."""
        for wanted in (CvssVersion.V4, *_V3, CvssVersion.V2):
            for score in self.scores:
                if score.version == wanted:
                    return score
        return None

    @property
    def severity(self) -> Severity | None:
        """Band of :meth:`best_score`; ``None`` when the record carries no CVSS vector."""
        best = self.best_score()
        return best.severity if best is not None else None

    @property
    def ids(self) -> tuple[str, ...]:
        """The id followed by its aliases, to find the same vulnerability across feeds."""
        return (self.id, *(a for a in self.aliases if a != self.id))
