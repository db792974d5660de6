"""The schema of a package record: ``info/index.json`` and the repodata record made from it.

One definition for every way a record enters (upload, mirror ingest) and every reader of stored
records (trees, reports, SBOMs, channeldata, pages). It follows conda's ``PackageRecord``
(``conda/models/records.py``) where conda and rattler (``rattler_conda_types::PackageRecord`` /
``IndexJson``) agree, and rattler where rattler is stricter, since a record rattler cannot read
makes rattler clients (pixi, mamba 2, py-rattler) drop the whole subdir:

- ``name``: ASCII letters, digits, ``-``, ``_``, ``.`` (rattler's ``PackageName``; uploads:
  CEP 26); ``build``: no space, slash or control character; ``version``: parses as
  ``rattler.Version``; at most 256, 256 and 128 characters (the artifacts table's columns);
- ``build_number``: an integer in ``[0, 2**31)``; ``timestamp``: an integer (ms, or s when small)
  in ``[0, year 9999]`` (rattler refuses floats);
- ``subdir``: ``noarch`` or ``os-arch``; ``arch``, ``platform``, ``license``,
  ``license_family``, ``features``, ``python_site_packages_path`` (relative, no ``..``):
  strings or null;
- ``depends``, ``constrains``: lists of strings, each a ``rattler.MatchSpec`` (lenient, as the
  solver reads repodata); ``track_features``: a string or a list of strings; ``purls``: a list
  of ``pkg:`` URLs; ``flags``: a list of strings; ``extra_depends``: an object of such lists;
- ``noarch``: ``"python"``, ``"generic"``, ``""``, a boolean or null (conda's legacy forms);
- ``md5``/``sha256``/``legacy_bz2_md5``: lowercase hex of 32/64/32 digits; ``size``,
  ``legacy_bz2_size``, ``indexed_timestamp``: non-negative integers;
- ``run_exports`` (old ``index.json`` files): an object of lists of strings, or a list of strings.

:func:`record_problem` gives the first problem of a record (or None); :func:`check_index` raises
it for an ``index.json``. :data:`SERVER_KEYS` are keys a package's ``index.json`` must not set in
the repodata record (the server computes or owns them); :func:`without_server_keys` drops them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson
from rattler import IndexJson, MatchSpec, Version

#: Keys of a repodata record that vouch for the artifact's bytes (the server computes them).
ARTIFACT_FACT_KEYS: Final = frozenset(
    {"md5", "sha256", "size", "legacy_bz2_md5", "legacy_bz2_size", "indexed_timestamp"}
)
#: Keys of a repodata record the server sets itself; a package's ``index.json`` never sets them.
SERVER_KEYS: Final = frozenset(
    {
        "url",
        "fn",
        "file_name",
        "channel",
        "schannel",
        "auth",
        "priority",
        "attestations_sha256",
        "signatures",
    }
    | ARTIFACT_FACT_KEYS
)
#: Keys an upstream repodata record may not bring into our channel (it is served from our URLs).
UPSTREAM_DROPPED_KEYS: Final = frozenset({"url", "fn", "file_name", "channel", "schannel", "auth"})

MAX_BUILD_NUMBER: Final = 2**31 - 1  # the artifacts table's column
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_FIELD_LENGTH: Final = 4096
_SUBDIR_RE: Final = re.compile(r"noarch|[a-z0-9]+-[a-z0-9]+")
_NOARCH: Final = frozenset({"python", "generic", ""})
_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]+")  # rattler's PackageName (CEP 26 for uploads)
_BUILD_RE: Final = re.compile(r"[^\s/\\\x00-\x1f\x7f]+")
#: The artifacts table's columns (a longer value would be cut there, and disagree).
MAX_NAME_LENGTH: Final = 256
MAX_VERSION_LENGTH: Final = 128
MAX_BUILD_LENGTH: Final = 256

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class RecordProblem:
    """What is wrong with a record: the field and a sentence about it."""

    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@lru_cache(maxsize=65536)
def version_problem(text: str) -> str | None:
    """Why rattler cannot read ``text`` as a version, or None."""
    return _parse_problem(Version, text, "a version rattler can read")


@lru_cache(maxsize=262144)
def spec_problem(text: str) -> str | None:
    """Why rattler cannot read ``text`` as a match spec (leniently, as repodata is read)."""
    return _parse_problem(MatchSpec, text, "a match spec")


def _parse_problem(parse: Callable[[str], object], text: str, what: str) -> str | None:
    try:
        parse(text)
    except Exception as exc:  # noqa: BLE001 - rattler raises its own exception types
        return f"{_shown(text)} is not {what} ({_first_line(exc)})"
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _string(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {_kind(value)}"
    if len(value) > MAX_FIELD_LENGTH:
        return f"is longer than {MAX_FIELD_LENGTH} characters"
    return None


def _nonempty(value: Any) -> str | None:
    return _string(value) or (None if value.strip() else "must not be empty")


def _optional_string(value: Any) -> str | None:
    return None if value is None else _string(value)


def _limited(value: Any, limit: int) -> str | None:
    problem = _nonempty(value)
    if problem is None and len(value) > limit:
        return f"is longer than {limit} characters"
    return problem


def _name(value: Any) -> str | None:
    problem = _limited(value, MAX_NAME_LENGTH)
    if problem is None and _NAME_RE.fullmatch(value) is None:
        return f"{_shown(value)} is not a package name (ASCII letters, digits, '-', '_', '.')"
    return problem


def _version(value: Any) -> str | None:
    return _limited(value, MAX_VERSION_LENGTH) or version_problem(value)


def _build(value: Any) -> str | None:
    problem = _limited(value, MAX_BUILD_LENGTH)
    if problem is None and _BUILD_RE.fullmatch(value) is None:
        return f"{_shown(value)} has a space, a slash or a control character"
    return problem


def _subdir(value: Any) -> str | None:
    problem = _string(value)
    if problem is None and (len(value) > 32 or _SUBDIR_RE.fullmatch(value) is None):
        return f"{_shown(value)} is not 'noarch' or '<os>-<arch>'"
    return problem


def _int_in(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value):
            return f"must be an integer, not {_kind(value)}"
        if not low <= value <= high:
            return f"{value} is out of range ({low} to {high})"
        return None

    return check


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    return _int_in(0, MAX_TIMESTAMP_MS)(value)


def _hex(length: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is str and len(value) == length:
            try:
                if bytes.fromhex(value).hex() == value:
                    return None
            except ValueError:
                pass
        return f"must be {length} lowercase hex digits"

    return check


def _string_list(value: Any, item_check: Check | None = None) -> str | None:
    """The first problem of a list of strings, each also passing ``item_check`` if given."""
    if type(value) is not list:
        return f"must be a list of strings, not {_kind(value)}"
    for position, item in enumerate(value):
        if type(item) is not str or len(item) > MAX_FIELD_LENGTH:
            return f"item {position} {_string(item)}"
        problem = None if item_check is None else item_check(item)
        if problem is not None:
            return f"item {position}: {problem}"
    return None


def _strings(value: Any) -> str | None:
    return _string_list(value)


def _specs(value: Any) -> str | None:
    return _string_list(value, spec_problem)


def _features(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return _optional_string(value)
    return _strings(value)


def _noarch(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value in _NOARCH):
        return None
    return f"must be 'python', 'generic' (or a boolean), not {_shown(value)}"


def _purls(value: Any) -> str | None:
    problem = _strings(value)
    if problem is None and not all(item.startswith("pkg:") for item in value):
        return "every purl must be a 'pkg:' URL"
    return problem


def _extra_depends(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be an object of match spec lists, not {_kind(value)}"
    return _each_value(value, _specs)


def _each_value(value: dict[Any, Any], check: Check) -> str | None:
    """The first problem of an object's values, named by its key."""
    for key, item in value.items():
        problem = check(item)
        if problem is not None:
            return f"{key!r}: {problem}"
    return None


def _site_packages(value: Any) -> str | None:
    problem = _optional_string(value)
    if problem is None and value is not None:
        parts = value.replace("\\", "/").split("/")
        if value.startswith(("/", "\\")) or ":" in value or ".." in parts:
            return "must be a relative path inside the environment"
    return problem


def run_exports_problem(value: Any) -> str | None:
    """Why ``value`` is not a ``run_exports`` object (``info/run_exports.json``), or None."""
    return _run_exports(value)


def _run_exports(value: Any) -> str | None:
    if isinstance(value, list):
        return _strings(value)
    if not isinstance(value, dict):
        return f"must be an object of lists of strings, not {_kind(value)}"
    return _each_value(value, _strings)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string", int: "an integer"}.get(
        type(value), "a number"
    )


_REQUIRED: Final[dict[str, Check]] = {
    "name": _name,
    "version": _version,
    "build": _build,
    "build_number": _int_in(0, MAX_BUILD_NUMBER),
}
_OPTIONAL: Final[dict[str, Check]] = {
    "subdir": _subdir,
    "arch": _optional_string,
    "platform": _optional_string,
    "depends": _specs,
    "constrains": _specs,
    "track_features": _features,
    "features": _optional_string,
    "noarch": _noarch,
    "license": _optional_string,
    "license_family": _optional_string,
    "timestamp": _timestamp,
    "python_site_packages_path": _site_packages,
    "purls": _purls,
    "flags": _strings,
    "extra_depends": _extra_depends,
    "run_exports": _run_exports,
    "md5": _hex(32),
    "sha256": _hex(64),
    "legacy_bz2_md5": _hex(32),
    "size": _int_in(0, 2**63 - 1),
    "legacy_bz2_size": _int_in(0, 2**63 - 1),
    "indexed_timestamp": _timestamp,
    "attestations_sha256": _hex(64),
}


_QUICK_STRINGS: Final = frozenset({"license", "license_family", "arch", "platform", "features"})
_QUICK_SPECS: Final = frozenset({"depends", "constrains"})
_QUICK_INTS: Final = {"size": 2**63 - 1, "timestamp": MAX_TIMESTAMP_MS}
_QUICK_HEX: Final = {"md5": 32, "sha256": 64}
_QUICK_NOARCH: Final = frozenset({"python", "generic", ""})
_CHECKED_BELOW: Final = frozenset({"name", "version", "build", "build_number", "subdir"})


def _quick_field(key: str, value: Any) -> bool:  # noqa: PLR0911 - one return per field kind
    """True when ``value`` is certainly a valid ``key`` (the common fields only)."""
    if key in _QUICK_SPECS:
        return type(value) is list and all(
            type(item) is str and len(item) <= MAX_FIELD_LENGTH and spec_problem(item) is None
            for item in value
        )
    if key in _QUICK_STRINGS:
        return type(value) is str and len(value) <= MAX_FIELD_LENGTH
    if key in _QUICK_INTS:
        return type(value) is int and 0 <= value <= _QUICK_INTS[key]
    if key in _QUICK_HEX:
        return _hex(_QUICK_HEX[key])(value) is None
    if key == "noarch":
        return type(value) is bool or (type(value) is str and value in _QUICK_NOARCH)
    if key == "track_features":
        return type(value) is str and len(value) <= MAX_FIELD_LENGTH
    return key in _CHECKED_BELOW or key not in _OPTIONAL


def _plainly_valid(record: Mapping[str, Any], *, require_subdir: bool) -> bool:
    """A quick "valid" for the common record (mirror ingest reads hundreds of thousands);
    False means "look closer": :func:`record_problem` then finds the problem, if any."""
    if require_subdir and record.get("subdir") is None:
        return False
    for key, value in record.items():
        if value is not None and not _quick_field(key, value):
            return False
    name, version, build = record.get("name"), record.get("version"), record.get("build")
    number, subdir = record.get("build_number"), record.get("subdir")
    return (
        type(name) is str
        and 0 < len(name) <= MAX_NAME_LENGTH
        and _NAME_RE.fullmatch(name) is not None
        and type(version) is str
        and 0 < len(version) <= MAX_VERSION_LENGTH
        and version_problem(version) is None
        and type(build) is str
        and 0 < len(build) <= MAX_BUILD_LENGTH
        and _BUILD_RE.fullmatch(build) is not None
        and type(number) is int
        and 0 <= number <= MAX_BUILD_NUMBER
        and (subdir is None or _subdir(subdir) is None)
    )


def record_problem(
    record: object, *, require_subdir: bool = False, with_rattler: bool = False
) -> RecordProblem | None:
    """The first problem of a repodata record or ``index.json`` (required fields first, then the
    others in the record's order), or None.

    A null field counts as absent, as conda reads it; pass records through
    :func:`without_nulls` before storing or serving them (rattler refuses some nulls).
    ``with_rattler`` also runs rattler's own ``IndexJson`` reader on it (a few microseconds: for
    uploads; the checks above already refuse everything that reader refuses).
    """
    if not isinstance(record, Mapping):
        return RecordProblem("record", f"must be a JSON object, not {_kind(record)}")
    if not with_rattler and _plainly_valid(record, require_subdir=require_subdir):
        return None
    problem = _field_problem(record, require_subdir=require_subdir)
    if problem is None and with_rattler:
        return _rattler_problem(without_nulls(record))
    return problem


def _field_problem(record: Mapping[str, Any], *, require_subdir: bool) -> RecordProblem | None:
    for field, check in _REQUIRED.items():
        value = record.get(field)
        if value is None:
            return RecordProblem(field, "is missing")
        problem = check(value)
        if problem is not None:
            return RecordProblem(field, problem)
    if require_subdir and record.get("subdir") is None:
        return RecordProblem("subdir", "is missing")
    for field, value in record.items():
        optional = _OPTIONAL.get(field)
        problem = None if optional is None or value is None else optional(value)
        if problem is not None:
            return RecordProblem(field, problem)
    return None


def _rattler_problem(record: Mapping[str, Any]) -> RecordProblem | None:
    """What rattler's own ``IndexJson`` reader refuses that the checks above let through."""
    try:
        IndexJson.from_str(
            orjson.dumps({k: v for k, v in record.items() if k != "run_exports"}).decode()
        )
    except TypeError as exc:  # orjson: an integer beyond 64 bits
        return RecordProblem("record", f"cannot be written as JSON ({exc})")
    except Exception as exc:  # noqa: BLE001 - rattler raises its own exception types
        return RecordProblem("record", f"rattler cannot read it: {_first_line(exc)}")
    return None


def decoded_problem(data: bytes) -> tuple[dict[str, Any] | None, RecordProblem | None]:
    """Decode stored record bytes and check them: ``(record without nulls, None)`` or
    ``(None, problem)``."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return None, RecordProblem("record", f"is not valid JSON ({exc})")
    problem = record_problem(record)
    return (None, problem) if problem is not None else (without_nulls(record), None)


def without_nulls(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` without its null fields (conda-index and rattler-index leave them out)."""
    return {key: value for key, value in record.items() if value is not None}


def without_server_keys(index: Mapping[str, Any]) -> dict[str, Any]:
    """``index`` without :data:`SERVER_KEYS`: what a package may say about itself."""
    return {key: value for key, value in index.items() if key not in SERVER_KEYS}


def upstream_record(record: dict[str, Any]) -> dict[str, Any]:
    """An upstream repodata record as we keep it: without null fields and without keys that
    would point clients elsewhere (:data:`UPSTREAM_DROPPED_KEYS`). The record itself when it
    has neither (the common case: no copy)."""
    if not (record.keys() & UPSTREAM_DROPPED_KEYS) and None not in record.values():
        return record
    return {
        key: value
        for key, value in record.items()
        if value is not None and key not in UPSTREAM_DROPPED_KEYS
    }


class RecordChecker:
    """Checks stored records before they are published, remembering the valid ones.

    A publication checks only the rows it has not seen valid before, by the row's id
    (:meth:`invalid_rows`): republishing a 100,000-record subdir costs one set comparison of ids,
    where hashing every record's bytes cost 0.2 s. A row's record is only ever replaced by a
    writer that checked it first (an upload's ``index.json``, a mirror's upstream record); the
    rows this guards against are those stored before records were fully checked. Patched
    records, made at each publication, are recognised by the hash of their bytes
    (:meth:`problem`). This process only.
    """

    def __init__(self, max_remembered: int = 2_000_000) -> None:
        self._valid: set[int] = set()  # hashes of record bytes
        self._valid_rows: set[int] = set()  # artifact ids
        self._max = max_remembered

    def problem(self, data: bytes) -> RecordProblem | None:
        key = hash(data)
        if key in self._valid:
            return None
        _, problem = decoded_problem(data)
        if problem is None:
            if len(self._valid) >= self._max:
                self._valid.clear()
            self._valid.add(key)
        return problem

    def revert_invalid(self, before: Mapping[str, bytes], after: dict[str, bytes]) -> list[str]:
        """Where patching made a record invalid (``after``, from ``before``), put back the
        unpatched record; a warning for each. Untouched records (the same bytes object) cost
        nothing."""
        warnings: list[str] = []
        for filename, data in after.items():
            old = before.get(filename)
            if old is None or data is old:
                continue
            problem = self.problem(data)
            if problem is not None:
                after[filename] = old
                warnings.append(
                    f"patch of {filename} not applied: the patched record is invalid ({problem})"
                )
        return warnings

    def invalid_rows(
        self, ids: Sequence[int], filenames: Sequence[str], records: Sequence[bytes]
    ) -> dict[str, str]:
        """filename -> why, for each stored row (``ids``, ``filenames``, ``records`` side by
        side) that must not be served; rows seen valid before cost one set comparison."""
        valid = self._valid_rows
        if valid.issuperset(ids):
            return {}
        if len(valid) >= self._max:
            valid.clear()
        found: dict[str, str] = {}
        for row_id, filename, data in zip(ids, filenames, records, strict=True):
            if row_id in valid:
                continue
            _, problem = decoded_problem(data)
            if problem is None:
                valid.add(row_id)
            else:
                found[filename] = f"{filename} left out: its record is invalid ({problem})"
        return found
