"""Typed settings: a TOML file plus ``STOCKADE_*`` environment variables, validated at start.

The file is found at ``$STOCKADE_CONFIG`` or ``DATA_DIR/stockade.toml``. Environment variables win
over the file; nested sections use a double underscore (``STOCKADE_UPLOAD__MAX_ARCHIVE_SIZE``).
The object is built once by the edges (CLI, server) and passed in; nothing reads it globally.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from croniter import CroniterError, croniter
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stockade.core.errors import ConfigurationError
from stockade.core.outbound import OutboundPolicy


class UploadSettings(BaseModel):
    """Caps applied to every uploaded archive (SPEC §3)."""

    max_archive_size: int = Field(default=4 * 1024**3, gt=0)
    max_request_size: int | None = Field(
        default=None,
        gt=0,
        description="largest multipart upload request (all its files); default: "
        "max_archive_size plus 1 MiB",
    )
    max_unpacked_size: int = Field(default=16 * 1024**3, gt=0)
    max_ratio: float = Field(default=200.0, gt=1)
    max_info_size: int = Field(default=64 * 1024**2, gt=0)
    max_members: int = Field(default=500_000, gt=0)
    future_tolerance_s: int = Field(default=24 * 3600, ge=0)


class ServerSettings(BaseModel):
    """Limits of the HTTP server (SPEC §11, §12)."""

    max_body_size: int = Field(
        default=32 * 1024**2,
        gt=0,
        description="largest request body other than uploads (JSON, forms, reports), bytes",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="seconds a client has to send a request's headers (new or kept-alive "
        "connection) before it is closed",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (uvicorn's forwarded_allow_ips); [] believes none",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        checked = []
        for item in (entry.strip() for entry in value):
            if item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
            checked.append(item)
        return checked


class PublicationSettings(BaseModel):
    zstd_level: int = Field(default=3, ge=1, le=22)
    bz2_level: int = Field(default=9, ge=1, le=9)
    coalesce_ms: int = Field(default=150, ge=0, le=60_000)
    index_max_age: int = Field(default=30, ge=0, description="Cache-Control max-age of index files")
    channeldata_apart_ms: int = Field(
        default=1000,
        ge=-1,
        description="a channel whose last channeldata.json build took this long (ms) or longer "
        "builds the next one in a process of its own, which gives its memory back and leaves "
        "this process's CPU to the indexes (-1: never)",
    )


class PasswordHashSettings(BaseModel):
    """argon2id cost of password hashes (sign-in and account changes). The defaults are the
    argon2 library's; the floors are OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane).
    Hashes made with other parameters keep verifying (each hash names its own)."""

    time_cost: int = Field(default=3, ge=2, le=20, description="argon2 passes")
    memory_kib: int = Field(
        default=65536, ge=19456, le=4 * 1024 * 1024, description="argon2 memory, KiB"
    )
    parallelism: int = Field(default=4, ge=1, le=16, description="argon2 lanes")


class AuthSettings(BaseModel):
    token_max_days: int = Field(default=365, ge=1)
    session_hours: int = Field(default=12, ge=1)
    secure_cookies: bool = False
    login_attempts_per_minute: int = Field(
        default=20, ge=1, description="failed sign-ins per client address before HTTP 429"
    )
    password_hash: PasswordHashSettings = Field(default_factory=PasswordHashSettings)


class LdapSettings(BaseModel):
    """LDAP / Active Directory (SPEC §4). Disabled unless ``url`` is set.

    Defaults suit OpenLDAP (``inetOrgPerson`` users, ``groupOfNames`` groups); for Active Directory set
    ``login_attribute = "sAMAccountName"``, ``user_filter = "(objectClass=user)"``,
    ``group_filter = "(objectClass=group)"``, ``membership = "memberOf"`` and
    ``disabled_filter = "(userAccountControl:1.2.840.113556.1.4.803:=2)"``.
    """

    url: str | None = Field(default=None, description="ldap://host:389 or ldaps://host:636")
    start_tls: bool = False
    ca_file: Path | None = None
    verify_tls: bool = True
    timeout_s: float = Field(default=10.0, gt=0)
    bind_dn: str | None = None
    bind_password: SecretStr | None = None
    user_base: str = ""
    user_filter: str = "(objectClass=inetOrgPerson)"
    login_attribute: str = "uid"
    email_attribute: str = "mail"
    display_name_attribute: str = "cn"
    disabled_filter: str | None = Field(
        default=None,
        description="LDAP filter matching disabled accounts, e.g. (pwdAccountLockedTime=*)",
    )
    group_base: str = ""
    group_filter: str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
    group_name_attribute: str = "cn"
    group_member_attribute: str = "member"
    membership: Literal["group-member", "memberOf"] = "group-member"
    nested_groups: bool = True
    group_roles: dict[str, list[str]] = Field(
        default_factory=dict, description="directory group name -> Stockade role names"
    )
    sync_schedule: str | None = Field(
        default="*/30 * * * *", description="cron expression, or empty"
    )

    @field_validator("sync_schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (like '*/30 * * * *')")
        try:
            croniter(value.strip()).get_next(float)
        except (CroniterError, ValueError, OverflowError):  # valid syntax, no such date
            raise ValueError(f"{value!r} never fires (no such date)") from None
        return value.strip()

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class OidcSettings(BaseModel):
    """OpenID Connect single sign-on (SPEC §4). Disabled unless ``issuer`` is set."""

    issuer: str | None = Field(default=None, description="issuer URL; discovery at /.well-known/…")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    display_name: str = "SSO"
    username_claim: str = "preferred_username"
    email_claim: str = "email"
    name_claim: str = "name"
    groups_claim: str | None = "groups"
    group_roles: dict[str, list[str]] = Field(default_factory=dict)
    api_audience: list[str] = Field(
        default_factory=list,
        description="accepted `aud` values of bearer JWTs on the API (default: client_id)",
    )
    verify_tls: bool = True
    ca_file: Path | None = None
    http_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)


class JobSettings(BaseModel):
    """The job queue (Huey): SQLite under the data folder by default, Redis beyond one machine."""

    redis_url: str | None = Field(
        default=None, description="redis://host:6379/0: jobs go through Redis (`stockade worker`)"
    )
    workers: int = Field(default=2, ge=1, le=64, description="job threads per worker process")
    poll_s: float = Field(default=0.5, gt=0, le=60, description="how often idle workers look")

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class MirrorSettings(BaseModel):
    concurrency: int = Field(default=8, ge=1, le=64, description="default downloads at once")
    stale_after_s: float = Field(
        default=60.0, gt=0, description="a running run without a heartbeat this long is taken over"
    )
    heartbeat_s: float = Field(default=5.0, gt=0)
    scheduler_poll_s: float = Field(
        default=20.0, gt=0, description="how often schedules are checked"
    )
    timeout_s: float = Field(default=60.0, gt=0, description="upstream connect/read timeout")
    stage_batch: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="new rows a run writes per short transaction before it switches them in",
    )
    run_apart: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="run a mirror run in a process of its own, which gives all of its memory "
        "back when it ends (auto: a mirror that has not run yet, or whose last run saw "
        "apart_from_records upstream records or more)",
    )
    apart_from_records: int = Field(
        default=20_000, ge=0, description="upstream records from which auto runs a mirror apart"
    )
    previews_per_minute_anonymous: int = Field(
        default=30, ge=1, description="dry runs and explanations per client address per minute"
    )
    previews_per_minute_user: int = Field(
        default=120, ge=1, description="dry runs and explanations per signed-in user per minute"
    )


class WebhookSettings(BaseModel):
    """Calls to channel webhooks (SPEC §7 notifications): timeout, retries and their spacing."""

    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="time a whole call may take, from resolving the host",
    )
    max_attempts: int = Field(default=8, ge=1, le=50, description="calls before giving up")
    backoff_s: list[float] = Field(
        default_factory=lambda: [30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0],
        min_length=1,
        description="wait after the 1st, 2nd, … failed call (the last repeats)",
    )
    poll_s: float = Field(
        default=15.0, gt=0, le=3600, description="how often due retries are looked for"
    )
    allow_loopback: bool = Field(
        default=False,
        description="let webhooks call loopback addresses (127.0.0.0/8, ::1); link-local, "
        "unspecified and multicast addresses stay refused",
    )

    @field_validator("backoff_s")
    @classmethod
    def _check_backoff(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("waits are seconds, zero or more")
        return value


class OutboundSettings(BaseModel):
    """What the server may call: mirror sources and proxies, feeds, webhooks, OpenID provider
    (docs/adr/0010). Loopback, link-local, unspecified and multicast addresses are refused, and so
    are private ones (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10…) unless allowed here."""

    allow_loopback: bool = Field(
        default=False, description="let outbound requests reach loopback (127.0.0.0/8, ::1)"
    )
    allow_private: bool = Field(
        default=False,
        description="let outbound requests reach private and other non-global addresses "
        "(on-premises upstreams, feeds, webhook receivers)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names and networks (CIDR) opened one by one, e.g. "
        "['artifactory.corp', '10.1.2.0/24']; link-local addresses only this way",
    )
    proxy: str | None = Field(
        default=None,
        description="HTTP(S) proxy of outbound requests that name none (environment proxy "
        "variables are not used)",
    )

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value and not value.lower().startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    def policy(self) -> OutboundPolicy:
        return OutboundPolicy(
            allow_loopback=self.allow_loopback,
            allow_private=self.allow_private,
            allowed_hosts=tuple(self.allowed_hosts),
            proxy=self.proxy,
        )


DEFAULT_FEED_NAMES = ("nvd", "osv-pypi", "cisa-kev", "epss")  # stockade.vulns.default_feeds


class VulnSettings(BaseModel):
    """Vulnerability intelligence: the default feeds a fresh install creates (SPEC §7)."""

    default_feeds: bool = Field(
        default=True,
        description="on first start, add the default feeds (NVD API 2.0, OSV PyPI, CISA KEV, "
        "EPSS; hourly); false on air-gapped sites",
    )
    default_feed_urls: dict[str, str] = Field(
        default_factory=dict,
        description="another URL for a default feed, by name (nvd, osv-pypi, cisa-kev, epss), "
        "e.g. an internal copy; read when the defaults are added",
    )

    @field_validator("default_feed_urls")
    @classmethod
    def _check_feed_names(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_FEED_NAMES))
        if unknown:
            raise ValueError(f"no default feed {unknown[0]!r} ({', '.join(DEFAULT_FEED_NAMES)})")
        for name, url in value.items():
            if not url.strip().lower().startswith(("https://", "file://")):
                raise ValueError(f"{name}: feed URLs are https:// or file://")
        return value


class ScanningSettings(BaseModel):
    """Malware scanning (SPEC §8): admins' YARA rules and ClamAV through clamd."""

    yara_rules_dir: Path | None = Field(
        default=None,
        description="a folder of the organisation's own YARA rules (*.yar, *.yara), compiled with "
        "the shipped ones; a rule that fails to compile holds every scan until it is fixed",
    )
    yara_max_member_bytes: int = Field(
        default=16 * 1024**2,
        ge=1024,
        description="bytes of one member YARA scans (the rest is not)",
    )
    yara_timeout_s: int = Field(default=60, ge=1, le=3600, description="YARA time per member")
    clamd: str | None = Field(
        default=None,
        description="ClamAV daemon, unix:///run/clamav/clamd.ctl or tcp://127.0.0.1:3310; "
        "unset: no ClamAV scan",
    )
    clamd_timeout_s: float = Field(default=30.0, gt=0, le=600, description="clamd time per member")
    workers: int = Field(
        default=2, ge=1, le=64, description="packages scanned at once by each server or worker"
    )
    lease_s: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="a scan's claim on its work, renewed while it runs; work of a process that "
        "died is taken over once it runs out",
    )
    first_fetch_wait_s: float = Field(
        default=20.0,
        ge=0,
        le=300,
        description="how long a passive mirror's first download waits for the file's verdict "
        "before answering 503 with Retry-After",
    )

    @field_validator("clamd")
    @classmethod
    def _check_clamd(cls, value: str | None) -> str | None:
        if value and not value.startswith(("unix://", "tcp://")):
            raise ValueError("must start with unix:// or tcp://")
        return value or None


class SigningSettings(BaseModel):
    """Content trust (SPEC §8): where the server finds the private key that signs records.

    The database holds public metadata only. The server signs with the key file in
    ``keys_dir`` whose public key the current key_mgr delegates pkg_mgr to, or with
    ``signer_command`` (an HSM or a cloud KMS behind a small program: docs/formats/signing.md).
    """

    keys_dir: Path | None = Field(
        default=None,
        description="folder of key files (*.key, PEM, mode 0600); default DATA_DIR/keys",
    )
    passphrase_env: str = Field(
        default="STOCKADE_SIGNING_PASSPHRASE",
        description="environment variable holding the key files' passphrase (when they have one)",
    )
    signer_command: list[str] | None = Field(
        default=None,
        description="an external signer, started once per signing pass: it prints its public key "
        "(64 hex) on a line, then answers each line of hex bytes with a line of hex signature",
    )
    signer_timeout_s: float = Field(default=30.0, gt=0, le=600)
    expiry_warning_days: int = Field(
        default=30, ge=1, le=3650, description="warn this long before root or key_mgr expires"
    )


class AirgapSettings(BaseModel):
    """Air-gapped operation (SPEC §9): where bundles are dropped, and whose signature is trusted."""

    folder: Path | None = Field(
        default=None,
        description="the air-gap folder bundles are dropped into; default DATA_DIR/airgap",
    )
    trusted_keys: list[str] = Field(
        default_factory=list,
        description="ed25519 public keys (64 hex) whose signature of a package bundle is trusted: "
        "the exporting server's pkg_mgr key (`stockade signing status` there); a mirror's "
        "trusted root is trusted too",
    )
    settle_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="a file changed this recently is left for the next run (still being copied)",
    )
    max_members: int = Field(default=5_000_000, ge=1)
    max_bytes: int = Field(default=16 * 1024**4, ge=1, description="unpacked bytes of one bundle")

    @field_validator("trusted_keys")
    @classmethod
    def _hex_keys(cls, value: list[str]) -> list[str]:
        keys = [k.strip().lower() for k in value]
        for key in keys:
            if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
                raise ValueError(f"{key[:20]!r}… is not a 64-hex ed25519 public key")
        return keys

    def folder_in(self, data_dir: Path) -> Path:
        return self.folder or data_dir / "airgap"


class DownloadSettings(BaseModel):
    """Download tracking (SPEC §10): buffered in memory, written in batches off the hot path."""

    record: bool = Field(default=True, description="record every package file served")
    retention_days: int = Field(
        default=365,
        ge=0,
        le=36500,
        description="days raw download rows are kept (0: forever); daily counts are kept for good",
    )
    flush_interval_s: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="how often each process writes its buffered downloads (what a crash can lose)",
    )
    buffer_size: int = Field(
        default=100_000,
        ge=10,
        le=10_000_000,
        description="downloads one process buffers at most; past it the oldest are dropped "
        "(and counted in the log), serving never waits",
    )
    batch_size: int = Field(default=5_000, ge=1, le=100_000, description="rows per transaction")
    prune_schedule: str = Field(
        default="17 3 * * *", description="cron schedule of the raw-row retention job"
    )


class AuditSettings(BaseModel):
    """The audit log's scheduled export (SPEC §10): new events written to a folder as files."""

    export_folder: Path | None = Field(
        default=None,
        description="folder the scheduled export writes new events to (none: no scheduled "
        "export; relative: under the data folder); with several replicas, one they all reach",
    )
    export_schedule: str = Field(default="7 * * * *", description="cron schedule of the export")
    export_format: Literal["jsonl", "csv"] = Field(
        default="jsonl", description="JSON lines, or CSV with a header row"
    )
    export_max_events: int = Field(
        default=100_000, ge=1, le=10_000_000, description="events in one file at most"
    )

    @field_validator("export_schedule")
    @classmethod
    def _check_export_schedule(cls, value: str) -> str:
        if not croniter.is_valid(value.strip()):
            raise ValueError(f"{value!r} is not a cron expression (like '7 * * * *')")
        return value.strip()

    def export_folder_in(self, data_dir: Path) -> Path | None:
        """The export folder; a relative one is under the data folder."""
        if self.export_folder is None:
            return None
        folder = self.export_folder
        return folder if folder.is_absolute() else data_dir / folder


MIB = 1024 * 1024


class S3Settings(BaseModel):
    """The S3-compatible object store of ``[storage] backend = "s3"`` (AWS S3, MinIO, Ceph RGW)."""

    bucket: str | None = Field(default=None, description="the bucket blobs are kept in (private)")
    endpoint_url: str | None = Field(
        default=None, description="the store's URL as the server reaches it; unset: AWS S3"
    )
    public_endpoint_url: str | None = Field(
        default=None,
        description="the store's URL as conda clients reach it, for presigned download URLs "
        "(default: endpoint_url)",
    )
    region: str | None = Field(default=None, description="e.g. eu-west-1; MinIO: us-east-1")
    access_key_id: str | None = Field(
        default=None, description="unset: boto3's own chain (environment, instance role, …)"
    )
    secret_access_key: SecretStr | None = None
    prefix: str = Field(default="", description="key prefix of every blob, e.g. stockade/")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path for most MinIO and Ceph setups (bucket in the path)"
    )
    downloads: Literal["redirect", "stream"] = Field(
        default="redirect",
        description="package downloads: a redirect to a presigned URL, or streamed by the server",
    )
    presign_expires_s: int = Field(
        default=300, ge=10, le=7 * 24 * 3600, description="lifetime of a presigned download URL"
    )
    multipart_threshold: int = Field(
        default=64 * MIB, ge=5 * MIB, description="files this large are uploaded in parts"
    )
    multipart_chunksize: int = Field(
        default=16 * MIB, ge=5 * MIB, le=5 * 1024 * MIB, description="bytes per uploaded part"
    )
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="connect/read timeout")

    @field_validator("endpoint_url", "public_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.lower().startswith(("http://", "https://")) or "@" in value:
            raise ValueError("must be an http:// or https:// URL without credentials")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and not all(c.isalnum() or c in "-_./" for c in value):
            raise ValueError("letters, digits and - _ . / only")
        return value


class StorageSettings(BaseModel):
    """Where blobs (package files, indexes, shards) are kept: a folder under the data folder
    (one machine), or an S3-compatible object store (several replicas, docs/admin-guide.md)."""

    backend: Literal["filesystem", "s3"] = "filesystem"
    s3: S3Settings = S3Settings()

    @model_validator(mode="after")
    def _check_s3(self) -> StorageSettings:
        if self.backend != "s3":
            return self
        if not self.s3.bucket:
            raise ValueError('backend "s3" needs s3.bucket (STOCKADE_STORAGE__S3__BUCKET)')
        if bool(self.s3.access_key_id) != bool(self.s3.secret_access_key):
            raise ValueError("set both s3.access_key_id and s3.secret_access_key, or neither")
        return self


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` (SPEC §11)."""

    public: bool = Field(
        default=False,
        description="anyone may read /metrics; else an admin or a token with system:read "
        "(Authorization: Bearer stk-…, as Prometheus sends it)",
    )
    worker_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`stockade worker` serves its own job metrics (mirror runs, scans, feed "
        "syncs, publications) on this port at /metrics, without authentication; unset: none",
    )
    worker_host: str = Field(
        default="127.0.0.1", description="address the worker's metrics port listens on"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STOCKADE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    database_url: str | None = None
    public_url: str | None = None
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    secret_key: SecretStr | None = Field(
        default=None,
        description="encrypts stored upstream credentials; default: a key file in the data folder "
        "(set the same value on every replica)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "console"
    embedded_worker: bool = True
    x_accel_redirect: str | None = Field(
        default=None, description="Internal nginx location serving the blob store, e.g. /_blobs/"
    )
    upload: UploadSettings = UploadSettings()
    server: ServerSettings = ServerSettings()
    publication: PublicationSettings = PublicationSettings()
    auth: AuthSettings = AuthSettings()
    ldap: LdapSettings = LdapSettings()
    oidc: OidcSettings = OidcSettings()
    jobs: JobSettings = JobSettings()
    mirror: MirrorSettings = MirrorSettings()
    webhooks: WebhookSettings = WebhookSettings()
    outbound: OutboundSettings = OutboundSettings()
    scanning: ScanningSettings = ScanningSettings()
    signing: SigningSettings = SigningSettings()
    airgap: AirgapSettings = AirgapSettings()
    vulns: VulnSettings = VulnSettings()
    downloads: DownloadSettings = DownloadSettings()
    audit: AuditSettings = AuditSettings()
    metrics: MetricsSettings = MetricsSettings()
    storage: StorageSettings = StorageSettings()

    @model_validator(mode="after")
    def _x_accel_needs_files(self) -> Settings:
        if self.x_accel_redirect and self.storage.backend != "filesystem":
            raise ValueError(
                "x_accel_redirect serves blobs from the local blob folder: it cannot be used "
                'with [storage] backend = "s3" (package downloads redirect to the store instead)'
            )
        return self

    @model_validator(mode="after")
    def _secure_cookies_behind_https(self) -> Settings:
        """An https public URL means browsers reach us over TLS: cookies are Secure unless the
        administrator said otherwise."""
        https = (self.public_url or "").strip().lower().startswith("https://")  # HTTPS:// too
        if https and "secure_cookies" not in self.auth.model_fields_set:
            self.auth = self.auth.model_copy(update={"secure_cookies": True})
        return self

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'stockade.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file; a missing default file is fine, a missing named file is not."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return config_file_values()


def config_file_values() -> dict[str, Any]:
    """The values the TOML file sets ({} without a file); `config check` says which came from it."""
    path = config_path()
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc


def config_path() -> Path | None:
    named = os.environ.get("STOCKADE_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigurationError(f"STOCKADE_CONFIG names {path}, which is not a file")
        return path
    data_dir = Path(os.environ.get("STOCKADE_DATA_DIR", "data"))
    default = data_dir / "stockade.toml"
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from file + env + overrides, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            env = "STOCKADE_" + "__".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {where} ({env}): {err['msg']}")
        raise ConfigurationError("invalid settings:\n" + "\n".join(lines)) from None
