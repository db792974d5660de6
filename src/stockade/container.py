"""The composition root: builds every service from settings, shared by web, CLI and jobs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stockade.airgap.cve_folder import CveFolder
from stockade.audit.downloads import DownloadRecorder
from stockade.auth.authenticator import Authenticator, BearerVerifier, PasswordDirectory
from stockade.auth.secrets import configure_password_hashing
from stockade.auth.service import FirstAdmin, UserService
from stockade.channels.locator import IndexLocator
from stockade.channels.publication import PublicationService
from stockade.conda.archive import ValidationLimits
from stockade.core.secrets import SecretBox
from stockade.db.engine import make_engine, make_session_factory, transaction
from stockade.db.unit_of_work import set_on_change
from stockade.mirroring.credentials import seal_legacy_proxies
from stockade.mirroring.passive import PassiveFetcher
from stockade.mirroring.placement import ApartExit
from stockade.mirroring.sync import MirrorSync
from stockade.mirroring.valid_records import VALID_RECORDS
from stockade.policies.engine import InMemoryVulnerabilities, VulnerabilityLookup
from stockade.scanning.registry import ScannerRegistry
from stockade.scanning.scanners.hashes import HashListScanner, KnownBadList
from stockade.scanning.service import ScanRunner
from stockade.search.index import SearchIndexer
from stockade.settings import Settings
from stockade.signing.records import RecordSigner
from stockade.storage.backends import open_blob_store
from stockade.storage.interfaces import BlobStore
from stockade.vulns.feedsync import FeedSync
from stockade.vulns.lookup import DbVulnerabilityLookup
from stockade.vulns.malicious import known_bad_from_feeds, list_key
from stockade.vulns.scan_webhooks import enqueue_scan_event
from stockade.vulns.security import BlobSecurityReader


@dataclass
class Container:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]
    blobs: BlobStore
    locator: IndexLocator
    publisher: PublicationService
    limits: ValidationLimits
    authenticator: Authenticator
    secrets: SecretBox
    passive: PassiveFetcher
    scanners: ScannerRegistry
    scans: ScanRunner
    change_listeners: list[Callable[[], None]] = field(default_factory=list)
    # What the policy engine's CVE criteria ask; ``build`` gives the database's answer.
    vulnerabilities: VulnerabilityLookup = field(default_factory=InMemoryVulnerabilities)
    # Set by the edge that owns a job queue (serve, worker); without one, runs wait for a worker
    # to find them pending, feed syncs wait for their schedule, and new artifacts are matched by
    # the next sync of a feed that changed.
    dispatch_run: Callable[[int], None] = lambda _run_id: None
    dispatch_feed_sync: Callable[[int], None] = lambda _feed_id: None
    dispatch_match: Callable[[list[int]], None] = lambda _artifact_ids: None
    # Webhook deliveries (by row id) to send; without a queue the webhook housekeeper of a worker
    # finds them due.
    dispatch_webhooks: Callable[[list[int]], None] = lambda _delivery_ids: None
    # Set by the job edge (``jobs/queue.py``): executes one mirror run in a process of its own
    # (``mirroring/placement.py``) and tells how that process ended; None: every run executes in
    # the worker's own process.
    run_mirror_apart: Callable[[int, threading.Event], ApartExit] | None = None
    # Downloads this process served, written in batches by ``jobs/downloads.py``.
    downloads: DownloadRecorder = field(default_factory=DownloadRecorder)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # mirror runs find the records earlier ones found valid, in any process (a cache)
        VALID_RECORDS.keep_in(settings.data_dir / "cache" / "valid-records")
        engine = make_engine(settings.db_url)
        factory = make_session_factory(engine)
        read_factory = make_session_factory(engine, readonly=True)
        blobs = open_blob_store(settings)
        locator = IndexLocator(read_factory, blobs)
        search = SearchIndexer(factory)
        publisher = PublicationService(
            factory,
            blobs,
            zstd_level=settings.publication.zstd_level,
            on_published=locator.invalidate,
            signer=RecordSigner(factory, settings.signing, settings.data_dir),
            on_switch=search.on_switch,  # search finds what the switched index serves
            read_factory=read_factory,
        )
        publisher.channeldata_apart_ms = settings.publication.channeldata_apart_ms
        upload = settings.upload
        limits = ValidationLimits(
            max_archive_size=upload.max_archive_size,
            max_unpacked_size=upload.max_unpacked_size,
            max_ratio=upload.max_ratio,
            max_info_size=upload.max_info_size,
            max_members=upload.max_members,
            future_tolerance_s=upload.future_tolerance_s,
        )
        cost = settings.auth.password_hash
        configure_password_hashing(
            time_cost=cost.time_cost, memory_kib=cost.memory_kib, parallelism=cost.parallelism
        )
        authenticator = Authenticator(
            factory,
            read_factory=read_factory,
            token_max_days=settings.auth.token_max_days,
            session_hours=settings.auth.session_hours,
            directory=_directory(settings),
            bearer=_bearer(settings),
            login_attempts_per_minute=settings.auth.login_attempts_per_minute,
        )
        secrets = SecretBox.from_settings(
            settings.secret_key.get_secret_value() if settings.secret_key else None,
            settings.data_dir,
        )
        passive = PassiveFetcher(
            factory,
            blobs,
            secrets,
            timeout_s=settings.mirror.timeout_s,
            outbound=settings.outbound.policy(),
        )
        scanners = ScannerRegistry(
            settings.scanning,
            read_factory,
            extra=lambda: [HashListScanner(_known_bad(read_factory))],
            extra_key=lambda: _known_bad_key(read_factory),
        )
        changes: list[Callable[[], None]] = []
        scans = ScanRunner(
            factory,
            blobs,
            scanners.current,
            limits=limits,
            workers=settings.scanning.workers,
            lease_s=settings.scanning.lease_s,
            notify_held=enqueue_scan_event,
            on_change=lambda: _call_all(changes),
            read_factory=read_factory,
        )
        return cls(
            settings,
            engine,
            factory,
            read_factory,
            blobs,
            locator,
            publisher,
            limits,
            authenticator,
            secrets,
            passive,
            scanners,
            scans,
            change_listeners=changes,
            vulnerabilities=DbVulnerabilityLookup(read_factory),
            downloads=DownloadRecorder(
                enabled=settings.downloads.record,
                buffer_size=settings.downloads.buffer_size,
                batch_size=settings.downloads.batch_size,
            ),
        )

    def __post_init__(self) -> None:
        # After-commit work declared by services (db/unit_of_work.py) wakes the workers here.
        set_on_change(self.factory, self.notify_changes)

    def mirror_sync(self) -> MirrorSync:
        return MirrorSync(
            self.factory,
            self.blobs,
            self.secrets,
            self.settings.mirror,
            vulnerabilities=lambda: self.vulnerabilities,
            limits=self.limits,
            on_change=self.notify_changes,
            outbound=self.settings.outbound.policy(),
            airgap=self.settings.airgap,
            airgap_folder=self.settings.airgap.folder_in(self.settings.data_dir),
        )

    def feed_sync(self) -> FeedSync:
        """A feed sync; a ``bundle`` feed of the air-gap folder (``airgap:``) applies the
        cve.zip files dropped there through ``airgap.cve_folder`` (vulns is below airgap)."""
        security = BlobSecurityReader(self.blobs)
        airgap = self.settings.airgap
        return FeedSync(
            self.factory,
            security=security,
            outbound=self.settings.outbound.policy(),
            bundle_folder=CveFolder(
                self.factory, airgap.folder_in(self.settings.data_dir), airgap.settle_s, security
            ),
        )

    def bootstrap(self) -> FirstAdmin | None:
        """Built-in roles, the first admin when there are no users yet, and proxy credentials
        stored in clear by an earlier version sealed (docs/adr/0010)."""
        password = self.settings.admin_password
        for attempt in range(3):
            try:
                with transaction(self.factory) as session:
                    seal_legacy_proxies(session, self.secrets)
                    return UserService(session).ensure_first_admin(
                        self.settings.admin_username,
                        password.get_secret_value() if password else None,
                    )
            except IntegrityError:
                # Replicas started at once on an empty database: another one committed the
                # built-in roles or the first admin first; the next attempt finds them.
                if attempt == 2:
                    raise
        return None

    def notify_changes(self) -> None:
        """Called by edges after a commit that asked for publications: wakes the publisher."""
        self.locator.invalidate_channels()
        for listener in self.change_listeners:
            listener()

    def close(self) -> None:
        self.scans.close()
        self.authenticator.touches.close()  # last uses asked for are written first
        self.engine.dispose()


def _known_bad(factory: sessionmaker[Session]) -> KnownBadList:
    with factory() as session:
        return known_bad_from_feeds(session)


def _known_bad_key(factory: sessionmaker[Session]) -> str:
    with factory() as session:
        return list_key(session)


def _call_all(listeners: list[Callable[[], None]]) -> None:
    for listener in listeners:
        listener()


def _directory(settings: Settings) -> PasswordDirectory | None:
    if not settings.ldap.enabled:
        return None
    from stockade.auth.ldap import LdapDirectory

    return LdapDirectory(settings.ldap)


def _bearer(settings: Settings) -> BearerVerifier | None:
    if not settings.oidc.enabled:
        return None
    from stockade.auth.oidc import OidcBearerVerifier

    return OidcBearerVerifier(settings.oidc, outbound=settings.outbound.policy())
