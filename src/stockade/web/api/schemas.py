"""REST schemas, apart from tables: ``<Noun>Create``, ``<Noun>Update``, ``<Noun>Public``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stockade.web.api.scan_schemas import ScanResultPublic

PrivacyLiteral = Literal["public", "authenticated", "private"]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON "\\ud800" escape left alone: not text


def _reject_nul(value: Any, where: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{where or 'value'} contains a NUL character")
    if isinstance(value, str) and _LONE_SURROGATE.search(value):
        raise ValueError(f"{where or 'value'} contains a lone surrogate (not text)")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key, where)
            _reject_nul(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item, where)


class Strict(BaseModel):
    """Request bodies: unknown fields are refused, and so are NUL and lone surrogates anywhere
    in a string."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        _reject_nul(data, "")
        return data


class ChannelCreate(Strict):
    name: str = Field(min_length=1, max_length=512)
    # None: public, or the parent's privacy for a subchannel (which is never looser than it)
    privacy: PrivacyLiteral | None = None
    description: str | None = Field(default=None, max_length=10_000)


class ChannelUpdate(Strict):
    privacy: PrivacyLiteral | None = None
    description: str | None = Field(default=None, max_length=10_000)
    frozen: bool | None = None
    scan_uploads: Literal["hold", "serve-first"] | None = Field(
        default=None,
        description="new uploads: held until their verdict (hold), or served at once and "
        "quarantined if malicious (serve-first, for trusted CI); needs security:manage",
    )
    scan_suspicious: Literal["hold", "serve"] | None = Field(
        default=None, description="suspicious verdicts: held or served; needs security:manage"
    )
    scan_errors: Literal["hold", "serve"] | None = Field(
        default=None,
        description="files the scanners could not judge: held (fail closed) or served; "
        "needs security:manage",
    )
    sign: bool | None = Field(
        default=None,
        description="sign every record the channel serves (conda-content-trust); the keys must "
        "be set up (`stockade signing init`); the channel is signed in the background",
    )


class SubdirPublic(BaseModel):
    subdir: str
    requested_rev: int
    published_rev: int
    record_count: int
    published_at: datetime | None
    pending: bool = Field(
        description="a publication is due, or files wait for their scan verdict to be published"
    )
    scanning: int = Field(default=0, description="files held until their scan verdict")
    failure: str | None = Field(
        default=None, description="why the last publication failed; null once one succeeds"
    )
    failures: int = Field(default=0, description="failed publications in a row")
    failing_since: datetime | None = None
    retry_at: datetime | None = Field(
        default=None, description="next try (sooner when the subdir changes)"
    )
    warnings: list[str] = Field(
        default_factory=list, description="what the last publication left out (invalid patches)"
    )
    signing_done: int = Field(
        default=0, description="records of a signed channel's subdir signed so far"
    )
    signing_total: int = Field(default=0, description="records it is signing (0: not signed)")


class ChannelPublic(BaseModel):
    name: str
    description: str | None
    privacy: str
    kind: str
    frozen: bool
    owner: str | None
    created_at: datetime
    updated_at: datetime
    url: str
    artifact_count: int | None = None
    total_size: int | None = None
    scan_uploads: str = "hold"
    scan_suspicious: str = "serve"
    scan_errors: str = "hold"
    sign: bool = False
    failing_subdirs: list[str] | None = Field(
        default=None,
        description="subdirs whose last publication failed (see /subdirs for why); on show only",
    )


class SignaturePublic(BaseModel):
    state: str = Field(
        description="signed (by this server), upstream-verified, upstream-unverified (present, "
        "not verifiable), upstream-invalid, upstream-dropped (the record was changed), unsigned"
    )
    upstream_status: str | None = Field(
        default=None,
        description="the upstream signature's verdict (verified, unverified, invalid, dropped), "
        "also when this server signs the record too",
    )
    detail: str | None = Field(default=None, description="why: the key, or what failed")


class ArtifactPublic(BaseModel):
    id: int
    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    build: str
    build_number: int
    sha256: str
    md5: str
    size: int
    indexed_timestamp: int
    created_at: datetime
    scan_status: str = Field(
        default="clean",
        description="pending (held until its verdict, unless the channel serves uploads first), "
        "unfetched (a passive mirror's file, scanned on first download), clean, suspicious, "
        "released",
    )
    scan: ScanResultPublic | None = Field(
        default=None, description="the scan's verdict, each finding and the scanners (on show)"
    )
    signature: SignaturePublic = Field(
        default_factory=lambda: SignaturePublic(state="unsigned"),
        description="the content-trust signature state of the file's record",
    )
    url: str


class UploadResult(BaseModel):
    uploaded: list[ArtifactPublic]


class Selection(Strict):
    files: list[str] = Field(default_factory=list, max_length=10_000)
    name: str | None = None
    version: str | None = None
    subdir: str | None = None


class CopyRequest(Selection):
    source: str
    target: str
    move: bool = False
    skip_existing: bool = False


class BulkResult(BaseModel):
    artifacts: list[ArtifactPublic]
    skipped: list[str]


class PatchSet(Strict):
    changes: dict[str, Any] = Field(default_factory=dict)
    revoked: bool = False
    removed: bool = False


class PatchPublic(BaseModel):
    subdir: str
    filename: str
    changes: dict[str, Any]
    revoked: bool
    removed: bool
    created_at: datetime


class NoticeCreate(Strict):
    message: str = Field(min_length=1, max_length=4000)
    level: Literal["info", "warning", "critical"] = "info"
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class NoticePublic(BaseModel):
    id: int
    message: str
    level: str
    created_at: datetime
    expires_at: datetime | None
