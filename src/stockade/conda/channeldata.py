"""Channel-level documents: ``channeldata.json``, ``run_exports.json`` (CEP 12), ``notices.json``.

``channeldata.json`` follows conda-index: one entry per package name describing its newest version
(about fields, subdirs, per-version ``run_exports``, link-script flags, timestamp in seconds);
``null`` fields are left out, as current conda-index writes them. Choosing "newest" needs conda
version ordering, which lives outside this pure package: :func:`summarize_packages` takes a
``version_key`` (e.g. ``rattler.Version``).

``notices.json`` is what conda reads for ``conda notices`` (``conda/notices/types.py``):
``{"notices": [{"id", "message", "level", "created_at", "expired_at", "interval"}]}``, timestamps
ISO 8601 with an explicit ``+00:00`` offset (older Pythons' ``fromisoformat`` reject ``Z``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

log = logging.getLogger(__name__)

CHANNELDATA_VERSION = 1
RUN_EXPORTS_VERSION = 1
_MS_THRESHOLD = 253402300799  # 9999-12-31 in seconds: anything larger is milliseconds
_MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31 in milliseconds: anything larger is invalid

#: About fields of a channeldata entry: the newest version's value wins when it has one.
ABOUT_FIELDS = (
    "description",
    "dev_url",
    "doc_url",
    "doc_source_url",
    "home",
    "license",
    "source_url",
    "source_git_url",
    "summary",
    "icon_url",
    "icon_hash",
    "tags",
    "identifiers",
    "keywords",
    "recipe_origin",
)
_LIST_FIELDS = frozenset({"tags", "identifiers", "keywords"})
#: Boolean flags of a channeldata entry: true if any build has it.
FLAG_FIELDS = (
    "binary_prefix",
    "text_prefix",
    "activate.d",
    "deactivate.d",
    "pre_link",
    "post_link",
    "pre_unlink",
)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def to_seconds(timestamp: object) -> int:
    """A conda timestamp (seconds or milliseconds) in whole seconds; 0 when absent or invalid."""
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool) or timestamp <= 0:
        return 0
    if timestamp > _MAX_TIMESTAMP_MS:
        return 0
    value = int(timestamp)
    return value // 1000 if value > _MS_THRESHOLD else value


# --- run_exports.json (CEP 12) ---------------------------------------------------------------


def build_run_exports_json(
    subdir: str,
    tar_bz2: Iterable[tuple[str, Mapping[str, Any] | None]],
    conda: Iterable[tuple[str, Mapping[str, Any] | None]],
) -> bytes:
    """``run_exports.json`` from (filename, run_exports) pairs; ``None``/empty gives ``{}``.

    CEP 12: never patched, lists every package of the unpatched index.
    """
    return _dumps(
        {
            "info": {"subdir": subdir, "version": RUN_EXPORTS_VERSION},
            "packages": {fn: {"run_exports": dict(re or {})} for fn, re in tar_bz2},
            "packages.conda": {fn: {"run_exports": dict(re or {})} for fn, re in conda},
        }
    )


# --- channeldata.json ------------------------------------------------------------------------


@dataclass
class ChannelPackageSummary:
    """The channeldata entry of one package name."""

    name: str
    version: str
    subdirs: list[str] = field(default_factory=list)
    timestamp: int | None = None  # seconds or milliseconds; written in seconds
    summary: str | None = None
    description: str | None = None
    home: str | None = None
    license: str | None = None
    dev_url: str | None = None
    doc_url: str | None = None
    doc_source_url: str | None = None
    source_url: str | None = None
    source_git_url: str | None = None
    icon_url: str | None = None
    icon_hash: str | None = None
    tags: list[str] | None = None
    identifiers: list[str] | None = None
    keywords: list[str] | None = None
    recipe_origin: str | None = None
    #: version -> run_exports of the newest build of that version
    run_exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()  # members of FLAG_FIELDS that are true

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "version": self.version,
            "subdirs": sorted(set(self.subdirs)),
            "timestamp": to_seconds(self.timestamp),
            "run_exports": {v: dict(re) for v, re in self.run_exports.items()},
        }
        for key in ABOUT_FIELDS:
            entry[key] = getattr(self, key)
        for key in FLAG_FIELDS:
            entry[key] = key in self.flags
        return {k: v for k, v in entry.items() if v is not None}


def build_channeldata_json(
    packages: Iterable[ChannelPackageSummary], subdirs: Iterable[str]
) -> bytes:
    """``channeldata.json`` for a channel: one entry per package name, sorted."""
    entries = {package.name: package.to_json() for package in packages}
    return _dumps(
        {
            "channeldata_version": CHANNELDATA_VERSION,
            "packages": dict(sorted(entries.items())),
            "subdirs": sorted(set(subdirs)),
        }
    )


@dataclass(frozen=True)
class ChannelRecord:
    """One artifact as channeldata sees it: its (patched) record plus what its archive says."""

    subdir: str
    record: Mapping[str, Any]  # repodata record: name, version, timestamp, license, ...
    about: Mapping[str, Any] = field(default_factory=dict)  # info/about.json
    run_exports: Mapping[str, Any] | None = None  # info/run_exports.json
    flags: frozenset[str] = frozenset()  # members of FLAG_FIELDS true for this artifact


def channel_record(
    subdir: str,
    record_json: bytes,
    about: Mapping[str, Any] | None,
    run_exports: Mapping[str, Any] | None,
) -> ChannelRecord | None:
    """A stored artifact as channeldata sees it; None (with a warning) when its stored record
    is not a JSON object, so that one bad row never stops the channel's channeldata."""
    try:
        record = orjson.loads(record_json)
    except orjson.JSONDecodeError as exc:
        record = exc
    if not isinstance(record, dict):
        log.warning("%s: a record that is not a JSON object left out of channeldata", subdir)
        return None
    return ChannelRecord(
        subdir=subdir,
        record=record,
        about=about if isinstance(about, Mapping) else {},
        run_exports=run_exports if isinstance(run_exports, Mapping) and run_exports else None,
    )


def _about_value(item: ChannelRecord, key: str) -> Any:
    # The record (maybe patched) wins over about.json, as in conda-index.
    value = _usable(key, item.record.get(key))
    return value if value else _usable(key, item.about.get(key))


def _usable(key: str, value: Any) -> Any:
    """An about value of the type channeldata readers expect (strings; lists of strings for
    ``tags``, ``identifiers``, ``keywords``), else None: a stray type is left out, not copied."""
    if key in _LIST_FIELDS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value if ok else None
    return value if isinstance(value, str) else None


def _fold(summary: ChannelPackageSummary, item: ChannelRecord) -> None:
    """Fold one artifact, newer than all folded before, into ``summary``."""
    version = str(item.record["version"])
    summary.version = version
    for key in ABOUT_FIELDS:
        value = _about_value(item, key)
        if value:
            setattr(summary, key, value)
    summary.subdirs.append(item.subdir)
    summary.flags = summary.flags | (item.flags & frozenset(FLAG_FIELDS))
    if item.run_exports:
        summary.run_exports[version] = dict(item.run_exports)
    else:  # conda-index keeps the newest build's run_exports per version
        summary.run_exports.pop(version, None)
    summary.timestamp = max(to_seconds(summary.timestamp), to_seconds(item.record.get("timestamp")))


def summarize_packages(
    records: Iterable[ChannelRecord],
    *,
    version_key: Callable[[str], Any],
    skipped: list[str] | None = None,
) -> list[ChannelPackageSummary]:
    """Aggregate artifacts into channeldata entries, one per package name.

    Artifacts are folded from oldest to newest (``version_key`` of the version, then timestamp),
    so the newest version names the entry and supplies each about field it has. A record without
    a string name, or whose version ``version_key`` cannot read (stored before validation was
    complete), is left out with a warning (and a line in ``skipped``) rather than failing the
    whole channel.
    """
    by_name: dict[str, list[tuple[Any, ChannelRecord]]] = {}
    for item in records:
        name, version = item.record.get("name"), item.record.get("version")
        try:
            if not isinstance(name, str) or not name or not isinstance(version, str):
                raise ValueError("no name or version")
            key = version_key(version)
        except Exception as exc:  # noqa: BLE001 - version_key is any parser (rattler's raise own)
            why = f"{item.subdir}: record {name!r} {version!r} left out of channeldata: {exc}"
            log.warning("%s", why[:500])
            if skipped is not None:
                skipped.append(why[:500])
            continue
        by_name.setdefault(name, []).append((key, item))
    summaries = []
    for name in sorted(by_name):
        keyed = sorted(
            by_name[name], key=lambda kv: (kv[0], to_seconds(kv[1].record.get("timestamp")))
        )
        items = [item for _, item in keyed]
        summary = ChannelPackageSummary(name=name, version=str(items[0].record["version"]))
        for item in items:
            _fold(summary, item)
        summaries.append(summary)
    return summaries


# --- notices.json ----------------------------------------------------------------------------


class NoticeLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Notice:
    """A message conda shows the users of a channel (``conda notices``)."""

    id: str
    message: str
    level: NoticeLevel
    created_at: datetime
    expired_at: datetime | None = None
    interval: int | None = None  # seconds between two displays to one user

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "message": self.message,
            "level": NoticeLevel(self.level).value,
            "created_at": _iso(self.created_at),
        }
        if self.expired_at is not None:
            doc["expired_at"] = _iso(self.expired_at)
        if self.interval is not None:
            doc["interval"] = self.interval
        return doc


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("notice timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def build_notices_json(notices: Iterable[Notice]) -> bytes:
    """``notices.json``: newest notice first."""
    ordered = sorted(notices, key=lambda n: (n.created_at, n.id), reverse=True)
    return orjson.dumps({"notices": [notice.to_json() for notice in ordered]})
