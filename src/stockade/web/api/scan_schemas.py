"""API schemas of scanning and the quarantine queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ScanStatusLiteral = Literal[
    "pending", "unfetched", "clean", "suspicious", "malicious", "error", "released"
]


class FindingPublic(BaseModel):
    scanner: str
    rule: str
    verdict: Literal["suspicious", "malicious"]
    member: str | None = Field(description="the archive member it matched in; null: the package")
    evidence: str
    details: dict[str, Any] = Field(default_factory=dict)


class ScanResultPublic(BaseModel):
    verdict: Literal["clean", "suspicious", "malicious", "error"]
    findings: list[FindingPublic]
    errors: dict[str, str] = Field(description="scanners that could not judge it, and why")
    versions: dict[str, str] = Field(description="each scanner's version (code and rules)")
    current: bool = Field(description="made under the scanners in force now")
    scanned_at: datetime
    duration_ms: int
    released_at: datetime | None = None
    released_by: str | None = None
    release_note: str | None = None


class HeldArtifactPublic(BaseModel):
    id: int
    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    sha256: str
    size: int
    source: str
    status: ScanStatusLiteral
    servable: bool
    created_at: datetime
    scan: ScanResultPublic | None


class ReleaseRequest(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="why it is safe to serve")


class RescanRequest(BaseModel):
    artifact_id: int | None = Field(default=None, ge=1, le=2**62)
    channel: str | None = Field(default=None, min_length=1, max_length=512)
    all: bool = Field(default=False, description="every artifact (neither artifact nor channel)")


class RescanQueued(BaseModel):
    queued: int


class ScanProgressPublic(BaseModel):
    queued: int = Field(description="artifacts waiting for a scan")
    running: int = Field(description="being scanned now")
    held: int = Field(description="in the quarantine queue")
    total: int
    scanners: dict[str, str] = Field(description="the scanners in force and their versions")
    fingerprint: str


class ScanRuleCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=1024 * 1024, description="YARA rules")


class ScanRulePublic(BaseModel):
    name: str
    enabled: bool
    created_at: datetime
    rules: int = Field(description="rules in the set")
    source: str
