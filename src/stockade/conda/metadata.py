"""The metadata in ``info/``: index.json, about.json, run_exports.json, paths.json and files.

Rules: every top-level ``info/*.json`` (and ``info/files``) is UTF-8 (``package:encoding``);
``info/index.json`` is a JSON object whose every field follows conda's and rattler's schema
(:mod:`stockade.conda.records`; ``package:index-json`` naming the field, ``package:version`` for a
version rattler cannot read), with ``subdir`` required; keys the server owns (``url``, ``fn``,
``channel``, ``md5``, ``sha256``, ``size``, ...) are dropped, not checked; the other JSON files
are objects of the expected shape (``package:info-json``); ``info/paths.json`` agrees with the
members (``package:paths-mismatch``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson

from stockade.conda.errors import PackageValidationError, printable
from stockade.conda.members import MemberRecord
from stockade.conda.names import validate_build, validate_name, validate_subdir, validate_version
from stockade.conda.package import PathEntry
from stockade.conda.records import record_problem, run_exports_problem, without_server_keys

INDEX: Final = "info/index.json"
ABOUT: Final = "info/about.json"
RUN_EXPORTS: Final = "info/run_exports.json"
PATHS: Final = "info/paths.json"
FILES: Final = "info/files"
SECURITY: Final = "info/security.json"  # vulns_mitigated (SPEC §7); read leniently, never rejected
KEPT: Final = frozenset({INDEX, ABOUT, RUN_EXPORTS, PATHS, FILES})

_TOP_LEVEL_JSON_RE: Final = re.compile(r"info/[^/]+\.json")
_LINK_SCRIPT_RE: Final = re.compile(
    r"(?:bin|Scripts|python-scripts)/\.(?P<name>.+)-(?:pre-link|post-link|pre-unlink)\.(?:sh|bat)"
)
_SECONDS_BELOW: Final = 10**11  # older packages give the timestamp in seconds
_CEP26: Final[Mapping[str, Callable[[object], str]]] = {
    "name": validate_name,
    "version": validate_version,
    "build": validate_build,
    "subdir": validate_subdir,
}
_KINDS_OF_TYPE: Final[Mapping[str, tuple[str, ...]]] = {
    "hardlink": ("file", "hardlink"),
    "softlink": ("symlink",),
    "directory": ("dir",),
}


def mitigated_ids(data: bytes | None) -> tuple[str, ...]:
    """The ids in ``vulns_mitigated`` of an ``info/security.json`` (upper-cased, sorted).

    A missing or malformed document or field mitigates nothing; it never fails a package.
    """
    if data is None:
        return ()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ()
    listed = doc.get("vulns_mitigated") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        return ()
    return tuple(sorted({v.strip().upper() for v in listed if isinstance(v, str) and v.strip()}))


def is_checked_text(path: str) -> bool:
    """Whether ``path`` is an info file that must be UTF-8: ``info/*.json`` and ``info/files``."""
    return path == FILES or _TOP_LEVEL_JSON_RE.fullmatch(path) is not None


def decode_text(data: bytes, member: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageValidationError(
            "encoding", f"{member} is not valid UTF-8 (byte {exc.start})", member=member
        ) from None


def load_object(data: bytes, member: str, *, rule: str) -> dict[str, Any]:
    """Parse ``data`` as a UTF-8 JSON object, or raise ``package:encoding`` / ``package:<rule>``."""
    text = decode_text(data, member)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PackageValidationError(
            rule, f"{member} is not valid JSON: {exc}", member=member
        ) from None
    if not isinstance(value, dict):
        raise PackageValidationError(rule, f"{member} is not a JSON object", member=member)
    return value


def check_index_fields(index: Mapping[str, Any]) -> None:
    """Check every field of ``info/index.json``: CEP 26 for the name, version, build and subdir
    (``package:<field>``), then presence, type and conda's and rattler's parsers for every field
    (:mod:`stockade.conda.records`; ``package:index-json``, ``package:version`` for a version
    rattler cannot read)."""
    for field, validate in _CEP26.items():
        if isinstance(index.get(field), str):
            validate(index[field])
    problem = record_problem(without_server_keys(index), require_subdir=True, with_rattler=True)
    if problem is not None:
        unreadable_version = problem.field == "version" and isinstance(index.get("version"), str)
        rule = "version" if unreadable_version else "index-json"
        shown = "" if problem.field == "record" else f"{problem.field!r} "
        raise PackageValidationError(
            rule, f"{shown}in {INDEX} {problem.detail}", member=INDEX, field=problem.field
        )


def check_run_exports(run_exports: Mapping[str, Any]) -> None:
    """``info/run_exports.json``: an object of lists of strings (``package:info-json``)."""
    problem = run_exports_problem(dict(run_exports))
    if problem is not None:
        raise PackageValidationError(
            "info-json", f"{RUN_EXPORTS} {problem}", member=RUN_EXPORTS, field="run_exports"
        )


def check_identity(
    index: Mapping[str, Any], expected: tuple[str, str, str], expected_subdir: str | None
) -> None:
    """The filename's ``(name, version, build)`` and the target subdir must match the index."""
    for field, wanted in zip(("name", "version", "build"), expected, strict=True):
        if index[field] != wanted:
            raise PackageValidationError(
                "filename-mismatch",
                f"the filename gives {field} {printable(wanted)!r} but {INDEX} says "
                f"{printable(index[field])!r}",
                field=field,
            )
    if expected_subdir is not None and index["subdir"] != expected_subdir:
        raise PackageValidationError(
            "subdir-mismatch",
            f"the package is for subdir {index['subdir']!r}, not {printable(expected_subdir)!r}",
            field="subdir",
        )


def check_timestamp(index: Mapping[str, Any], now_ms: int, tolerance_s: int) -> None:
    """``timestamp`` (ms, or s when below 1e11) may be at most ``tolerance_s`` in the future."""
    timestamp = index.get("timestamp")
    if timestamp is None:
        return
    timestamp_ms = timestamp * 1000 if timestamp < _SECONDS_BELOW else timestamp
    if timestamp_ms > now_ms + tolerance_s * 1000:
        raise PackageValidationError(
            "future-timestamp",
            f"'timestamp' {timestamp} is more than {tolerance_s} s in the future",
            member=INDEX,
            field="timestamp",
        )


def _path_entry(item: object, position: int) -> PathEntry:
    def fail(field: str, what: str) -> PackageValidationError:
        return PackageValidationError(
            "info-json", f"paths[{position}] in {PATHS}: {what}", member=PATHS, field=field
        )

    if not isinstance(item, dict):
        raise fail("paths", "not an object")
    path, path_type = item.get("_path"), item.get("path_type")
    size, sha256 = item.get("size_in_bytes"), item.get("sha256")
    if not isinstance(path, str) or not path:
        raise fail("_path", "'_path' must be a non-empty string")
    if not isinstance(path_type, str):
        raise fail("path_type", "'path_type' must be a string")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise fail("size_in_bytes", "'size_in_bytes' must be a non-negative integer")
    if sha256 is not None and not isinstance(sha256, str):
        raise fail("sha256", "'sha256' must be a string")
    return PathEntry(path=path, path_type=path_type, size=size, sha256=sha256)


def parse_paths(data: bytes) -> list[PathEntry]:
    """Parse ``info/paths.json``.

    Its shape: ``{"paths": [{"_path", "path_type", "sha256", "size_in_bytes"}, ...]}``.
    """
    document = load_object(data, PATHS, rule="info-json")
    items = document.get("paths")
    if not isinstance(items, list):
        raise PackageValidationError(
            "info-json", f"{PATHS} has no 'paths' list", member=PATHS, field="paths"
        )
    return [_path_entry(item, position) for position, item in enumerate(items)]


def parse_files(data: bytes) -> list[str]:
    """Parse ``info/files``, one path per line."""
    lines = decode_text(data, FILES).split("\n")
    return [line.removesuffix("\r") for line in lines if line.strip()]


def is_payload(record: MemberRecord) -> bool:
    """Whether the member is a file or link the package installs (not info/, not a directory)."""
    return record.kind != "dir" and record.path != "info" and not record.path.startswith("info/")


def entry_for(path: str, record: MemberRecord | None) -> PathEntry:
    """Describe ``path`` from its member, or as a file of unknown size when it has none."""
    if record is None:
        return PathEntry(path=path, path_type="hardlink", size=None, sha256=None)
    if record.kind == "symlink":
        return PathEntry(path=path, path_type="softlink", size=None, sha256=None)
    if record.kind == "dir":
        return PathEntry(path=path, path_type="directory", size=None, sha256=None)
    return PathEntry(path=path, path_type="hardlink", size=record.size, sha256=record.sha256)


def _mismatch(detail: str, path: str) -> PackageValidationError:
    return PackageValidationError("paths-mismatch", detail, member=path)


def _check_entry(entry: PathEntry, record: MemberRecord) -> None:
    kinds = _KINDS_OF_TYPE.get(entry.path_type)
    if kinds is None:
        raise _mismatch(
            f"{PATHS} gives the unknown path_type {printable(entry.path_type)!r}", entry.path
        )
    if record.kind not in kinds:
        raise _mismatch(
            f"{PATHS} lists a {entry.path_type} but the member is a {record.kind}", entry.path
        )
    if record.kind in {"symlink", "dir"}:
        return
    if entry.size is not None and entry.size != record.size:
        raise _mismatch(
            f"{PATHS} gives {entry.size} bytes, the member has {record.size}", entry.path
        )
    if entry.sha256 is not None and entry.sha256.lower() != record.sha256:
        raise _mismatch(f"{PATHS} gives another sha256 than the member's", entry.path)


def check_paths(entries: Iterable[PathEntry], records: Mapping[str, MemberRecord]) -> None:
    """Every listed path is a member of that type, size and sha256; every payload member is listed.

    An archive with no payload at all (only info/, as indexers' test archives are) is not expected
    to hold the files it lists.
    """
    payload = [record for record in records.values() if is_payload(record)]
    listed: set[str] = set()
    for entry in entries:
        if entry.path in listed:
            raise _mismatch(f"{PATHS} lists the path twice", entry.path)
        listed.add(entry.path)
        record = records.get(entry.path)
        if record is not None:
            _check_entry(entry, record)
        elif payload:
            raise _mismatch(f"listed in {PATHS} but not in the archive", entry.path)
    for record in payload:
        if record.path not in listed:
            raise _mismatch(f"member is not listed in {PATHS}", record.path)


def link_scripts(records: Mapping[str, MemberRecord], name: str) -> list[str]:
    """The members conda runs when linking or unlinking the package ``name``."""
    found = []
    for path, record in records.items():
        match = _LINK_SCRIPT_RE.fullmatch(path)
        if match is not None and match["name"] == name and record.kind != "dir":
            found.append(path)
    return found
