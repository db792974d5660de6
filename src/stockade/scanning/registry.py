"""The scanners in force, rebuilt when their rules change (admins' rules in the database).

Building compiles YARA rules, so it happens once, then again only when the admins' rule set (its
``scan_rules`` rows) changes; other processes see the change on their next check (every
``CHECK_S``), and the new fingerprint makes every stored verdict out of date: the rescan of
:mod:`stockade.scanning.rescans` queues them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.scanning.interfaces import Scanner
from stockade.scanning.models import ScanRule
from stockade.scanning.recording import ScannerSet
from stockade.scanning.scanners.clamd import ClamdScanner
from stockade.scanning.scanners.linkscripts import LinkScriptScanner
from stockade.scanning.scanners.names import NameScanner
from stockade.scanning.scanners.python import PythonScanner
from stockade.scanning.scanners.yara import RuleSource, YaraScanner, admin_sources, shipped_sources
from stockade.settings import ScanningSettings

CHECK_S = 5.0

Extra = Callable[[], Sequence[Scanner]]
ExtraKey = Callable[[], str]


class ScannerRegistry:
    """``current()`` gives the :class:`ScannerSet` to scan with (thread-safe, cheap when warm).

    ``extra`` adds scanners whose input lives in other domains (the known-bad hash list built
    from the vulnerability feeds); it is called on every rebuild.
    """

    def __init__(
        self,
        settings: ScanningSettings,
        factory: sessionmaker[Session],
        *,
        extra: Extra | None = None,
        extra_key: ExtraKey | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.extra = extra
        self.extra_key = extra_key
        self._lock = threading.Lock()
        self._set: ScannerSet | None = None
        self._rules_key = ""
        self._checked = -CHECK_S

    def current(self) -> ScannerSet:
        with self._lock:
            if self._set is None or time.monotonic() - self._checked > CHECK_S:
                rules = self._db_rules()
                extra = self.extra_key() if self.extra_key else ""
                key = hashlib.sha256(
                    "\0".join([extra, *(f"{r.origin}\0{r.text}" for r in rules)]).encode()
                ).hexdigest()
                if self._set is None or key != self._rules_key:
                    self._set = ScannerSet.of(self._build(rules))
                    self._rules_key = key
                self._checked = time.monotonic()
            return self._set

    def invalidate(self) -> None:
        with self._lock:
            self._checked = -CHECK_S
            self._set = None

    def _db_rules(self) -> list[RuleSource]:
        with self.factory() as session:
            rows = session.execute(
                select(ScanRule.name, ScanRule.source)
                .where(ScanRule.enabled.is_(True))
                .order_by(ScanRule.name)
            ).all()
        return [RuleSource(f"rule {name}", source) for name, source in rows]

    def _build(self, db_rules: list[RuleSource]) -> list[Scanner]:
        return [*builtin_scanners(self.settings, db_rules), *(self.extra() if self.extra else [])]


def builtin_scanners(settings: ScanningSettings, db_rules: Sequence[RuleSource]) -> list[Scanner]:
    """Every scanner shipped with Stockade, configured (clamd only where it is set)."""
    scanners: list[Scanner] = [
        LinkScriptScanner(),
        PythonScanner(),
        NameScanner(),
        _yara(settings, db_rules),
    ]
    if settings.clamd:
        scanners.append(ClamdScanner(settings.clamd, timeout_s=settings.clamd_timeout_s))
    return scanners


def _yara(settings: ScanningSettings, db_rules: Sequence[RuleSource]) -> YaraScanner:
    scanner = YaraScanner.from_settings(
        settings.yara_rules_dir,
        max_bytes=settings.yara_max_member_bytes,
        timeout_s=settings.yara_timeout_s,
    )
    if not db_rules:
        return scanner
    sources = shipped_sources()
    if settings.yara_rules_dir is not None:
        sources += admin_sources(settings.yara_rules_dir)
    return YaraScanner(
        [*sources, *db_rules],
        max_bytes=settings.yara_max_member_bytes,
        timeout_s=settings.yara_timeout_s,
    )
