"""Policy model (SPEC §6): a named rule set of optional criteria plus exceptions.

Everything here is an immutable value, validated on construction. Invalid input raises
:class:`~stockade.core.errors.InvalidInputError` whose message names the offending field and whose
``extra["field"]`` carries it for the edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rattler import MatchSpec

from stockade.core.errors import InvalidInputError

__all__ = [
    "DEFAULT_CVE_STATUSES",
    "LICENSE_FAMILIES",
    "NOARCH",
    "CveScore",
    "LicenseFamily",
    "Policy",
    "SetMode",
    "parse_spec",
]

NOARCH = "noarch"


class LicenseFamily(StrEnum):
    AGPL = "agpl"
    GPL2 = "gpl2"
    GPL3 = "gpl3"
    LGPL = "lgpl"
    BSD = "bsd"
    MIT = "mit"
    APACHE = "apache"
    PSF = "psf"
    MOZILLA = "mozilla"
    PUBLIC_DOMAIN = "public_domain"
    PROPRIETARY = "proprietary"
    OTHER = "other"
    NONE = "none"


LICENSE_FAMILIES: frozenset[str] = frozenset(f.value for f in LicenseFamily)


class SetMode(StrEnum):
    """How a list criterion is read: keep what is ``in`` it, or keep what is ``not_in`` it."""

    IN = "in"
    NOT_IN = "not_in"


#: Curation statuses of a vulnerability on a package (SPEC §7): ``reported`` until curated.
SUBDIR_RE = re.compile(r"^(noarch|[a-z0-9]+-[a-z0-9_]+)$")
CVE_STATUSES: frozenset[str] = frozenset({"reported", "active", "mitigated", "cleared", "disputed"})
DEFAULT_CVE_STATUSES: frozenset[str] = frozenset({"active", "reported"})


def _invalid(field_name: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field_name}: {message}", code="policy:invalid", field=field_name)


def parse_spec(text: str, *, field_name: str) -> MatchSpec:
    """Parse a user-written MatchSpec as conda reads it (``openssl 1.1.1w`` is ``==1.1.1w``; globs
    allowed in names); errors name the field."""
    if not isinstance(text, str) or not text.strip():
        raise _invalid(field_name, f"empty MatchSpec {text!r}")
    try:
        return MatchSpec(text.strip(), strict=False, exact_names_only=False)
    except Exception as exc:  # rattler raises its own exception types
        raise _invalid(field_name, f"invalid MatchSpec {text!r}: {exc}") from exc


def _specs(value: Iterable[str], field_name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise _invalid(field_name, "expected a list of MatchSpecs, not a single string")
    out: list[str] = []
    for text in value:
        parse_spec(text, field_name=field_name)
        out.append(text.strip())
    return tuple(out)


def _as_utc(value: datetime | None, field_name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise _invalid(field_name, f"expected a datetime, got {type(value).__name__}")
    # A naive datetime is read as UTC.
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise _invalid(field_name, f"{value.isoformat()} is out of range in UTC") from None


@dataclass(frozen=True, slots=True)
class CveScore:
    """Drop records whose highest CVSS base score compares (``>``/``>=``) to ``threshold``."""

    threshold: float
    operator: str = ">="
    statuses: frozenset[str] = DEFAULT_CVE_STATUSES

    def __post_init__(self) -> None:
        if self.operator not in (">", ">="):
            raise _invalid("cve_score.operator", f"must be '>' or '>=', got {self.operator!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise _invalid("cve_score.threshold", "must be a number")
        if not 0.0 <= float(self.threshold) <= 10.0:
            raise _invalid("cve_score.threshold", f"must be between 0 and 10, got {self.threshold}")
        statuses = frozenset(self.statuses)
        if not statuses:
            raise _invalid("cve_score.statuses", "must not be empty")
        unknown = sorted(statuses - CVE_STATUSES)
        if unknown:
            raise _invalid("cve_score.statuses", f"unknown status(es) {', '.join(unknown)}")
        object.__setattr__(self, "statuses", statuses)

    def exceeded_by(self, score: float) -> bool:
        return score > self.threshold if self.operator == ">" else score >= self.threshold


@dataclass(frozen=True, slots=True)
class Policy:
    """A named, reusable rule set. Every criterion is optional (``None``/``False`` = not applied).

    - ``platforms``: subdirs kept (``in``) or dropped (``not_in``); ``noarch`` is always kept unless
      it is named in the list.
    - ``licenses``: license families kept (``in``) or dropped (``not_in``), see :mod:`.licenses`.
    - ``only_specs`` / ``exclude_specs``: MatchSpecs; keep only what matches one / drop what matches one.
    - ``date_from`` / ``date_to``: inclusive window on the record ``timestamp``.
    - ``cooldown_days``: drop records published less than N days before ``now``.
    - ``cve_score``, ``uncurated_cves``, ``signed_only``, ``no_link_scripts``: see SPEC §6.
    - ``keep_latest``: keep only the newest N versions of each name.
    - ``include_dependencies``, ``prune_unsatisfiable``: dependency-aware steps, see :mod:`.engine`.
    - ``exceptions``: MatchSpecs that keep a record whatever the criteria of *this* policy say.
    """

    name: str
    platforms: tuple[str, ...] | None = None
    platforms_mode: SetMode = SetMode.IN
    licenses: frozenset[str] | None = None
    licenses_mode: SetMode = SetMode.NOT_IN
    only_specs: tuple[str, ...] = ()
    exclude_specs: tuple[str, ...] = ()
    date_from: datetime | None = None
    date_to: datetime | None = None
    cooldown_days: float | None = None
    cve_score: CveScore | None = None
    uncurated_cves: bool = False
    signed_only: bool = False
    no_link_scripts: bool = False
    keep_latest: int | None = None
    include_dependencies: bool = False
    prune_unsatisfiable: bool = False
    exceptions: tuple[str, ...] = ()
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:  # noqa: PLR0912  # one check per field
        if not isinstance(self.name, str) or not self.name.strip():
            raise _invalid("name", "must be a non-empty string")
        for mode_field in ("platforms_mode", "licenses_mode"):
            value = getattr(self, mode_field)
            try:
                object.__setattr__(self, mode_field, SetMode(value))
            except ValueError as exc:
                raise _invalid(mode_field, f"must be 'in' or 'not_in', got {value!r}") from exc
        if self.platforms is not None:
            if isinstance(self.platforms, str):
                raise _invalid("platforms", "expected a list of subdirs, not a single string")
            plats = tuple(str(p).strip() for p in self.platforms)
            for plat in plats:
                if not SUBDIR_RE.match(plat):
                    raise _invalid(
                        "platforms",
                        f"{plat!r} is not a conda subdir (like linux-64, osx-arm64, noarch)",
                    )
            object.__setattr__(self, "platforms", plats)
        if self.licenses is not None:
            if isinstance(self.licenses, str):
                raise _invalid(
                    "licenses", "expected a list of license families, not a single string"
                )
            fams = frozenset(str(f).strip().lower() for f in self.licenses)
            unknown = sorted(fams - LICENSE_FAMILIES)
            if unknown:
                raise _invalid(
                    "licenses",
                    f"unknown license family {', '.join(unknown)} "
                    f"(known: {', '.join(f.value for f in LicenseFamily)})",
                )
            object.__setattr__(self, "licenses", fams)
        object.__setattr__(self, "only_specs", _specs(self.only_specs, "only_specs"))
        object.__setattr__(self, "exclude_specs", _specs(self.exclude_specs, "exclude_specs"))
        object.__setattr__(self, "exceptions", _specs(self.exceptions, "exceptions"))
        object.__setattr__(self, "date_from", _as_utc(self.date_from, "date_from"))
        object.__setattr__(self, "date_to", _as_utc(self.date_to, "date_to"))
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise _invalid("date_to", "must not be before date_from")
        if self.cooldown_days is not None:
            if isinstance(self.cooldown_days, bool) or not isinstance(
                self.cooldown_days, int | float
            ):
                raise _invalid("cooldown_days", "must be a number of days")
            if self.cooldown_days < 0:
                raise _invalid("cooldown_days", f"must not be negative, got {self.cooldown_days}")
        if self.keep_latest is not None:
            if isinstance(self.keep_latest, bool) or not isinstance(self.keep_latest, int):
                raise _invalid("keep_latest", "must be an integer")
            if self.keep_latest < 1:
                raise _invalid("keep_latest", f"must be at least 1, got {self.keep_latest}")
        if self.cve_score is not None and not isinstance(self.cve_score, CveScore):
            raise _invalid("cve_score", "must be a CveScore")
        if self.include_dependencies and not self.only_specs:
            raise _invalid(
                "include_dependencies",
                "adds the dependencies of what only_specs keeps: give only_specs too",
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Build a policy from a plain mapping (JSON shape); unknown keys are refused by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise _invalid(unknown[0], "unknown policy field")
        values = dict(data)
        if isinstance(values.get("cve_score"), dict):
            cve = dict(values["cve_score"])
            if "statuses" in cve:
                cve["statuses"] = frozenset(cve["statuses"])
            try:
                values["cve_score"] = CveScore(**cve)
            except TypeError as exc:
                raise _invalid("cve_score", str(exc)) from exc
        for key in ("date_from", "date_to"):
            if isinstance(values.get(key), str):
                try:
                    values[key] = datetime.fromisoformat(values[key])
                except ValueError as exc:
                    raise _invalid(key, f"not an ISO date/time: {values[key]!r}") from exc
        for key in ("only_specs", "exclude_specs", "exceptions", "platforms"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if isinstance(values.get("licenses"), list):
            values["licenses"] = frozenset(values["licenses"])
        return cls(**values)
