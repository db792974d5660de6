"""Read a package once, in a stream, and show each member to every scanner that wants it.

The archive is read with the same guarded tar reader as validation (:mod:`stockade.conda.tarstream`):
no member is written to disk, memory is bounded by ``member_cap`` (what is kept of one member), and
the caps of :class:`~stockade.conda.package.ValidationLimits` still apply, so a package that changed
on disk since it was validated cannot turn the scan into a decompression bomb.

A scanner that cannot give a verdict (:class:`ScannerUnavailableError`, or any other exception: a bug
in a scanner must not pass a package) puts the report in error: the artifact is held (fail closed)
unless its channel says otherwise.
"""

from __future__ import annotations

import bz2
import logging
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import zstandard

from stockade.conda.condazip import check_layout
from stockade.conda.errors import PackageValidationError
from stockade.conda.members import normalize_path
from stockade.conda.package import ValidationLimits
from stockade.conda.tarstream import Budget, CountingReader, iter_members, open_tar
from stockade.scanning.interfaces import (
    Finding,
    Member,
    Scanner,
    ScannerUnavailableError,
    ScanSubject,
    Verdict,
    worst,
)
from stockade.scanning.links import PROBE_PATH, LinkAliases

log = logging.getLogger(__name__)

DEFAULT_MEMBER_CAP: Final = 32 * 1024**2  # bytes kept of one member for the scanners


@dataclass
class ScanReport:
    """What one scan of one archive found.

    ``verdict`` is the worst finding's; ``errors`` names each scanner that could not give a verdict
    (``{"clamd": "clamd is not reachable"}``) and, when not empty, the scan as a whole is in error.
    ``versions`` are the scanners' versions, kept with the result so that a rule change is seen.
    """

    findings: list[Finding] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    members: int = 0
    bytes_read: int = 0

    @property
    def verdict(self) -> Verdict:
        return worst(f.verdict for f in self.findings)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def scanner_versions(scanners: Sequence[Scanner]) -> dict[str, str]:
    """``{name: version}`` of ``scanners``: the fingerprint a stored result is compared against."""
    return {s.name: s.version for s in scanners}


class _Run:
    def __init__(
        self, subject: ScanSubject, scanners: Sequence[Scanner], member_cap: int, budget: Budget
    ) -> None:
        self.subject = subject
        self.scanners = scanners
        self.member_cap = member_cap
        self.budget = budget
        self.report = ScanReport(versions=scanner_versions(scanners))
        self.links = LinkAliases()  # what a link makes a path hold, shown after the last member

    def read_tar(self, tar: tarfile.TarFile, component: str) -> None:
        for info in iter_members(tar):
            self.budget.count_member()
            if info.issym() or info.islnk():
                self.links.link(
                    normalize_path(info.name),
                    info.linkname,
                    symbolic=info.issym(),
                    component=component,
                )
                continue
            if not info.isreg():
                continue
            path = normalize_path(info.name)
            self.links.file(path, info.size, info.mode, component)
            wanting = [
                s for s in self.scanners if s.name not in self.report.errors and s.wants(path)
            ]
            if not wanting and not self.links.wants_content(info.size):
                continue
            member = self._member(tar, info, path, component)
            self.links.keep(path, member.data, info.size)
            for scanner in wanting:
                self._call(scanner, partial(scanner.scan_member, self.subject, member))

    def read_links(self) -> None:
        """Paths that links create, shown to the path-specific scanners that want them."""
        specific = [s for s in self.scanners if not s.wants(PROBE_PATH)]

        def wanted(path: str) -> bool:
            return any(s.wants(path) for s in specific)

        for alias in self.links.aliases(wanted):
            if isinstance(alias, Finding):
                self.report.findings.append(alias)
                continue
            for scanner in specific:
                if scanner.name not in self.report.errors and scanner.wants(alias.path):
                    self._call(scanner, partial(scanner.scan_member, self.subject, alias))

    def _member(
        self, tar: tarfile.TarFile, info: tarfile.TarInfo, path: str, component: str
    ) -> Member:
        fileobj = tar.extractfile(info)
        if fileobj is None:
            raise PackageValidationError("format", "cannot read member", member=info.name)
        kept = fileobj.read(self.member_cap)
        self.report.members += 1
        self.report.bytes_read += len(kept)
        return Member(
            path=path,
            data=kept,
            size=info.size,
            truncated=info.size > len(kept),
            mode=info.mode,
            component=component,
        )

    def finish(self) -> None:
        self.read_links()
        for scanner in self.scanners:
            if scanner.name not in self.report.errors:
                self._call(scanner, partial(scanner.finish, self.subject))

    def _call(self, scanner: Scanner, work: Callable[[], Iterable[Finding]]) -> None:
        try:
            found = list(work())
        except ScannerUnavailableError as exc:
            self.report.errors[scanner.name] = str(exc) or "the scanner is unavailable"
        except Exception as exc:  # a scanner's bug must hold the package, not pass it
            log.exception("scanner %s failed on %s", scanner.name, self.subject.filename)
            self.report.errors[scanner.name] = f"the scanner failed: {type(exc).__name__}"
        else:
            self.report.findings.extend(found)


def _components(path: Path, filename: str, run: _Run) -> None:
    """Read the archive at ``path`` (a blob: its name says nothing) as ``filename`` says."""
    stem = _stem(filename)
    if filename.endswith(".conda"):
        with zipfile.ZipFile(path) as archive:
            check_layout(archive)  # no hidden entry a streaming client would install unscanned
            for component in ("info", "pkg"):
                with archive.open(f"{component}-{stem}.tar.zst") as raw:
                    reader = zstandard.ZstdDecompressor().stream_reader(
                        raw, read_across_frames=True, closefd=False
                    )
                    with reader:
                        run.read_tar(open_tar(CountingReader(reader, run.budget)), component)
        return
    with path.open("rb") as raw, bz2.BZ2File(raw) as decompressed:
        run.read_tar(open_tar(CountingReader(decompressed, run.budget)), "")


def _stem(filename: str) -> str:
    for suffix in (".conda", ".tar.bz2"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def scan_archive(
    path: Path,
    subject: ScanSubject,
    scanners: Sequence[Scanner],
    *,
    limits: ValidationLimits | None = None,
    member_cap: int = DEFAULT_MEMBER_CAP,
) -> ScanReport:
    """Scan the archive at ``path`` (named ``subject.filename``) with ``scanners``.

    An archive that cannot be read (corrupt, over a cap) gives a report in error under the
    ``structure`` scanner name, never an exception: the caller records the error and holds it.
    """
    limits = limits or ValidationLimits()
    run = _Run(subject, scanners, member_cap, Budget(limits, max(path.stat().st_size, 1)))
    try:
        _components(path, subject.filename, run)
    except (PackageValidationError, OSError, EOFError, KeyError, ValueError) as exc:
        run.report.errors["structure"] = _reason(exc)
        return run.report
    except (tarfile.TarError, zipfile.BadZipFile, zstandard.ZstdError) as exc:
        run.report.errors["structure"] = f"the archive cannot be read: {type(exc).__name__}"
        return run.report
    run.finish()
    return run.report


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PackageValidationError):
        return f"{exc.code}: {exc.detail}"
    return f"the archive cannot be read: {type(exc).__name__}"
