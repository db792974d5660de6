"""REST schemas of mirrors, runs and policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from stockade.web.api.schemas import PrivacyLiteral, Strict

ModeLiteral = Literal["active", "passive"]
RunStateLiteral = Literal["pending", "running", "completed", "failed", "stopped"]
CurationStatus = Literal["active", "reported", "mitigated", "cleared", "disputed"]
DEFAULT_STATUSES: tuple[CurationStatus, ...] = ("active", "reported")


#: Fields a mirror always has: leaving them out keeps them, null is refused (422 naming it).
#: (``token``, ``schedule``, ``proxy`` and ``ca_bundle`` may be null: that clears them.)
NOT_NULL = ("mode", "subdirs", "concurrency", "enabled", "companions", "allowed_names", "source")


class MirrorFields(Strict):
    token: str | None = Field(
        default=None,
        max_length=4096,
        description="credential for another Stockade (sent as a Bearer token); never shown back",
    )
    mode: ModeLiteral | None = None
    subdirs: list[str] | None = Field(default=None, max_length=64)
    schedule: str | None = Field(
        default=None, max_length=128, description="cron expression; empty: manual runs only"
    )
    proxy: str | None = Field(default=None, max_length=2048)
    ca_bundle: str | None = Field(default=None, max_length=4096)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    enabled: bool | None = None
    companions: list[str] | None = Field(default=None, max_length=256)
    allowed_names: list[str] | None = Field(default=None, max_length=10_000)
    trusted_root: dict[str, Any] | str | None = Field(
        default=None,
        description="the upstream's root metadata (its root.json, as an object or its text): "
        'upstream signatures are verified against it; null or "" clears it',
    )
    signing_metadata_url: str | None = Field(
        default=None,
        max_length=4096,
        description="where the upstream's key_mgr.json and N.root.json are (default: the "
        "source URL); null clears it",
    )

    @field_validator(*NOT_NULL, mode="before", check_fields=False)
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        """Leave a field out to keep it; ``null`` is not a value for these (it was read as
        "off" or failed later)."""
        if value is None:
            raise ValueError(
                f"{info.field_name} cannot be null (leave it out for the current or default value)"
            )
        return value


class MirrorCreate(MirrorFields):
    name: str = Field(min_length=1, max_length=128)
    source: str = Field(
        min_length=1, max_length=4096, examples=["https://conda.anaconda.org/conda-forge"]
    )
    channel: str | None = Field(
        default=None, max_length=512, description="target channel (default: the mirror's name)"
    )
    privacy: PrivacyLiteral | None = Field(
        default=None,
        description="when the channel is created: default public, or its parent's for a subchannel",
    )
    check: bool = Field(
        default=True,
        description="check that the source is a channel we can reach (each subdir's "
        "repodata.json); false for a source that is offline on purpose",
    )


class MirrorUpdate(MirrorFields):
    source: str | None = Field(default=None, min_length=1, max_length=4096)


class RunStep(BaseModel):
    name: str
    label: str
    state: str
    done: int = 0
    total: int | None = None


class RunPublic(BaseModel):
    id: int
    mirror: str
    state: RunStateLiteral
    trigger: str
    attempt: int
    stop_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    summary: str | None
    error: str | None
    steps: list[RunStep]
    counts: dict[str, Any]
    url: str


class RunLogPublic(BaseModel):
    id: int
    at: datetime
    level: str
    message: str


class TrustedRootPublic(BaseModel):
    """What is shown of a mirror's trusted root: public metadata only."""

    version: int | None = None
    expiration: str | None = None
    root_keys: list[str] = Field(default_factory=list, description="ed25519 public keys (hex)")
    key_mgr_keys: list[str] = Field(default_factory=list)
    sha256: str | None = None
    error: str | None = None


class MirrorPublic(BaseModel):
    name: str
    channel: str
    source: str
    has_token: bool
    mode: ModeLiteral
    subdirs: list[str]
    schedule: str | None
    next_run_at: datetime | None
    proxy: str | None = Field(description="without its credentials (stored encrypted)")
    has_proxy_credentials: bool = False
    ca_bundle: str | None
    concurrency: int
    enabled: bool
    companions: list[str]
    allowed_names: list[str]
    policies: list[str]
    created_at: datetime
    last_run: RunPublic | None
    trusted_root: TrustedRootPublic | None = None
    signing_metadata_url: str | None = None
    signature_trust: str = Field(
        default="", description="what upstream signatures are checked with, as of the last run"
    )


class ExclusionPublic(BaseModel):
    subdir: str
    filename: str
    reasons: list[str]


# ----------------------------------------------------------------------------------- policies


class CveScoreSchema(Strict):
    threshold: float = Field(ge=0, le=10)
    operator: Literal[">", ">="] = ">="
    statuses: list[CurationStatus] = Field(default_factory=lambda: list(DEFAULT_STATUSES))


class PolicyDefinition(Strict):
    """Every criterion is optional (SPEC §6)."""

    platforms: list[str] | None = Field(default=None, max_length=64)
    platforms_mode: Literal["in", "not_in"] = "in"
    licenses: list[str] | None = Field(default=None, max_length=32)
    licenses_mode: Literal["in", "not_in"] = "not_in"
    only_specs: list[str] = Field(default_factory=list, max_length=10_000)
    exclude_specs: list[str] = Field(default_factory=list, max_length=10_000)
    date_from: datetime | None = None
    date_to: datetime | None = None
    cooldown_days: float | None = Field(default=None, ge=0, le=36_500)
    cve_score: CveScoreSchema | None = None
    uncurated_cves: bool = False
    signed_only: bool = False
    no_link_scripts: bool = False
    keep_latest: int | None = Field(default=None, ge=1, le=100_000)
    include_dependencies: bool = False
    prune_unsatisfiable: bool = False
    exceptions: list[str] = Field(default_factory=list, max_length=10_000)

    def as_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_defaults=True)
        if self.cve_score is not None:
            data["cve_score"] = self.cve_score.model_dump(mode="json")
        return data


class PolicyCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=10_000)
    definition: PolicyDefinition = Field(default_factory=PolicyDefinition)


class PolicyUpdate(Strict):
    description: str | None = Field(default=None, max_length=10_000)
    definition: PolicyDefinition | None = None


class AssignmentPublic(BaseModel):
    policy: str
    channel: str | None
    mirror: str | None


class AssignmentCreate(Strict):
    channel: str | None = Field(default=None, max_length=512)
    mirror: str | None = Field(default=None, max_length=128)


class PolicyPublic(BaseModel):
    name: str
    description: str
    definition: dict[str, Any]
    assignments: list[AssignmentPublic]
    created_at: datetime
    updated_at: datetime


class DryRunRequest(Strict):
    channel: str = Field(min_length=1, max_length=512)
    mirror: str | None = Field(default=None, max_length=128)


class DraftDryRunRequest(DryRunRequest):
    name: str = Field(default="draft", min_length=1, max_length=128)
    definition: PolicyDefinition | None = Field(
        default=None, description="the draft policy; none: preview the current policies"
    )


class SubdirPreviewPublic(BaseModel):
    subdir: str
    upstream: int
    kept: int
    excluded: int
    by_reason: dict[str, int]
    samples: dict[str, list[str]]
    would_add: int
    would_remove: int
    add_samples: list[str]
    remove_samples: list[str]
    undecided: int = Field(
        default=0,
        description="kept records whose link scripts are unknown until their file is downloaded",
    )
    undecided_samples: list[str] = Field(default_factory=list)


class MirrorPreviewPublic(BaseModel):
    mirror: str
    policies: list[str]
    snapshot: bool = Field(
        description="whether the mirror has a last run's upstream records to preview (upstream "
        "is never fetched for a preview)"
    )
    snapshot_at: datetime | None = Field(description="when that run fetched the upstream")
    notes: list[str] = Field(default_factory=list)
    totals: dict[str, Any]
    subdirs: list[SubdirPreviewPublic]


class DryRunPublic(BaseModel):
    channel: str
    policy: str | None
    mirrors: list[MirrorPreviewPublic]


class ReasonPublic(BaseModel):
    policy: str
    criterion: str
    detail: str


class ExplanationPublic(BaseModel):
    mirror: str
    subdir: str
    filename: str
    kept: bool
    in_channel: bool
    reasons: list[ReasonPublic]
    exceptions: list[str] = Field(
        default_factory=list,
        description="the policy exceptions it matches (`policy: spec`): they keep it whatever "
        "that policy's criteria say",
    )
    evaluated_at: datetime | None = Field(
        default=None, description="when the last run, whose reasons these are, fetched upstream"
    )
    notes: list[str] = Field(default_factory=list)
