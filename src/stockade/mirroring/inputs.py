"""What an evaluation of a mirror needs besides the policies: the upstream records, the names the
dependency-confusion guard protects, and the lookups the criteria read (SPEC §5, §6)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgpack
import orjson
import zstandard
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact, Channel
from stockade.channels.scanstate import ScanStatus
from stockade.conda.records import record_problem, upstream_record
from stockade.core.errors import InvalidInputError
from stockade.mirroring.valid_records import record_key
from stockade.policies.engine import Reason
from stockade.signing.upstream import (
    SignatureCheck,
    SignatureStatus,
    UpstreamTrust,
    check_record,
)

Record = dict[str, Any]
GUARD_POLICY = "guard"
INTEGRITY_POLICY = "integrity"
CONFLICT_POLICY = "conflict"
#: Where an artifact's bytes came from other than a mirror (``Artifact.source``).
LOCAL_SOURCES = ("upload", "copy", "import")


@dataclass
class UpstreamSubdir:
    """One upstream subdir's records (filename -> record) and what travels with them."""

    subdir: str
    records: dict[str, Record]
    base_url: str | None = None
    #: filename -> the upstream's ``signatures`` entry ({pubkey: {"signature": hex}})
    signatures: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: filename -> why the record we keep is not the one upstream signed (only signed records)
    changed: dict[str, str] = field(default_factory=dict)

    @property
    def signed(self) -> set[str]:
        """Filenames with a ``signatures`` entry."""
        return set(self.signatures)


def parse_repodata(subdir: str, data: bytes) -> UpstreamSubdir:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(
            f"upstream {subdir}/repodata.json is not valid JSON: {exc}", code="mirror:bad-repodata"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidInputError(
            f"upstream {subdir}/repodata.json is not a JSON object", code="mirror:bad-repodata"
        )
    records: dict[str, Record] = {}
    altered: dict[str, str] = {}
    for section in ("packages", "packages.conda"):
        part = doc.get(section) or {}
        if not isinstance(part, dict):
            raise InvalidInputError(
                f"upstream {subdir}/repodata.json: {section!r} is not an object",
                code="mirror:bad-repodata",
            )
        for filename, record in part.items():
            if isinstance(record, dict) and _safe_filename(filename):
                kept = records[filename] = upstream_record(record)
                if kept is not record:
                    altered[filename] = _why_changed(record, kept)
    info = doc.get("info")
    base_url = info.get("base_url") if isinstance(info, dict) else None
    base_url = base_url if isinstance(base_url, str) else None
    signatures = _signature_entries(doc.get("signatures"), records)
    changed = {fn: why for fn, why in altered.items() if fn in signatures}
    return UpstreamSubdir(subdir, records, base_url, signatures, changed)


def _signature_entries(section: Any, records: Mapping[str, Record]) -> dict[str, dict[str, Any]]:
    """The upstream's ``signatures`` entries of the records kept (others are ignored)."""
    if not isinstance(section, dict):
        return {}
    return {
        fn: entry
        for fn, entry in section.items()
        if fn in records and isinstance(entry, dict) and entry
    }


def _why_changed(record: Record, kept: Record) -> str:
    """Why the record we keep differs from upstream's (``upstream_record`` left keys out)."""
    gone = sorted(k for k in record if k not in kept)
    named = sorted(k for k in gone if record[k] is not None)
    nulls = sorted(k for k in gone if record[k] is None)
    parts = []
    if named:
        parts.append(
            f"the record names upstream URLs or files ({', '.join(named)}) that Stockade replaces"
        )
    if nulls:
        parts.append(f"null fields ({', '.join(nulls)}) are left out")
    return "; ".join(parts) + ": the record served is not the one upstream signed"


def _safe_filename(filename: str) -> bool:
    return (
        isinstance(filename, str)
        and 0 < len(filename) <= 512
        and "/" not in filename
        and "\\" not in filename
        and not filename.startswith(".")
        and filename.endswith((".conda", ".tar.bz2"))
    )


def integrity_problems(
    upstream: UpstreamSubdir, seen: set[bytes] | frozenset[bytes] = frozenset()
) -> tuple[dict[str, list[Reason]], list[bytes]]:
    """Records we cannot take: no sha256 to check downloads against, or a field that breaks
    conda's or rattler's schema (``stockade.conda.records``: one bad record must not break
    the channel's index, trees or reports). Records whose key is in ``seen`` were found valid
    before (``mirroring.valid_records``) and are not checked again; returns the problems and
    the keys of the records found valid."""
    problems: dict[str, list[Reason]] = {}
    valid: list[bytes] = []
    for filename, rec in upstream.records.items():
        sha = rec.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            problems[filename] = [
                Reason(INTEGRITY_POLICY, "sha256", "upstream record has no sha256")
            ]
            continue
        key = record_key(rec)
        if key is not None and key in seen:
            valid.append(key)
        elif (problem := record_problem(rec)) is not None:
            problems[filename] = [
                Reason(INTEGRITY_POLICY, "record", f"upstream record is invalid: {problem}")
            ]
        elif key is not None:
            valid.append(key)
    return problems, valid


def guarded_names(session: Session, channel_id: int, companions: Iterable[str]) -> set[str]:
    """Package names present in the channel or its companions other than through a mirror."""
    channel_ids = [channel_id]
    names = list(companions)
    if names:
        channel_ids += list(
            session.scalars(select(Channel.id).where(Channel.name.in_(names))).all()
        )
    return set(
        session.scalars(
            select(Artifact.name)
            .where(Artifact.channel_id.in_(channel_ids), Artifact.source.in_(LOCAL_SOURCES))
            .distinct()
        ).all()
    )


def guard_reasons(
    upstream: UpstreamSubdir, guarded: set[str], allowed: Iterable[str]
) -> dict[str, list[Reason]]:
    blocked = guarded - set(allowed)
    if not blocked:
        return {}
    return {
        fn: [
            Reason(
                GUARD_POLICY,
                "dependency_confusion",
                f"{rec.get('name')} is a local package of this channel or a companion",
            )
        ]
        for fn, rec in upstream.records.items()
        if rec.get("name") in blocked
    }


def malicious_files(session: Session, channel_id: int) -> set[str]:
    return set(
        session.scalars(
            select(Artifact.filename).where(
                Artifact.channel_id == channel_id, Artifact.scan_status == ScanStatus.MALICIOUS
            )
        ).all()
    )


@dataclass
class FileSet:
    """Lookups for the engine over a fixed set of filenames."""

    files: set[str] = field(default_factory=set)

    def is_malicious(self, filename: str) -> bool:
        return filename in self.files


def signature_checks(
    parsed: Mapping[str, UpstreamSubdir], trust: UpstreamTrust
) -> dict[str, dict[str, SignatureCheck]]:
    """subdir -> filename -> the state of each upstream signature (records with one)."""
    out: dict[str, dict[str, SignatureCheck]] = {}
    for subdir, up in parsed.items():
        per: dict[str, SignatureCheck] = {}
        for fn, entry in up.signatures.items():
            check = check_record(up.records[fn], entry, up.changed.get(fn), trust)
            if check is not None:
                per[fn] = check
        out[subdir] = per
    return out


@dataclass
class SignatureStates:
    """The policy engine's signature lookup (``signed_only``): verified, or why not. By filename,
    as the engine asks; a filename in several subdirs is verified only if it is in each."""

    checks: dict[str, SignatureCheck] = field(default_factory=dict)

    @classmethod
    def of(cls, checks: Mapping[str, Mapping[str, SignatureCheck]]) -> SignatureStates:
        merged: dict[str, SignatureCheck] = {}
        for per in checks.values():
            for fn, check in per.items():
                seen = merged.get(fn)
                if seen is None or seen.status == SignatureStatus.VERIFIED:
                    merged[fn] = check
        return cls(merged)

    def is_signed(self, filename: str) -> bool:
        check = self.checks.get(filename)
        return check is not None and check.status == SignatureStatus.VERIFIED

    def why_unsigned(self, filename: str) -> str:
        check = self.checks.get(filename)
        if check is None:
            return "no signature"
        return f"upstream signature {check.status}: {check.detail}"


def vulnerability_version(lookup: object) -> str:
    """What identifies the vulnerability data a run used ("" when the lookup cannot say)."""
    version = getattr(lookup, "version", None)
    return str(version()) if callable(version) else ""


# ------------------------------------------------------------------------------- exclusion blobs


def pack_exclusions(excluded: Mapping[str, list[Reason]]) -> bytes:
    """filename -> [[policy, criterion, detail], ...] as msgpack, zstd-compressed. Each reason
    goes to msgpack as it is, made an array by the ``default`` hook: the same bytes as a copy of
    the mapping made of lists, in a fifth of the time (400,000 excluded records every run)."""
    body = msgpack.packb(excluded, default=_reason_array)
    return zstandard.ZstdCompressor(level=3).compress(body)


def _reason_array(reason: Reason) -> tuple[str, str, str]:
    return reason.policy, reason.criterion, reason.detail


def unpack_exclusions(data: bytes) -> dict[str, list[Reason]]:
    raw = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31))
    return {fn: [Reason(p, c, d) for p, c, d in rs] for fn, rs in raw.items()}


def digest(*parts: Any) -> str:
    """A stable digest of JSON-able parts (sets are sorted: their order varies between processes)."""
    return hashlib.sha256(
        orjson.dumps(_stable(parts), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    ).hexdigest()


def _stable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted((_stable(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _stable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
