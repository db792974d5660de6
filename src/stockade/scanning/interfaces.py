"""What every scanner is (SPEC §8): a name, a version, and findings for the members it is shown.

The engine (:mod:`stockade.scanning.engine`) reads an archive once, in a stream, and shows each
member to every scanner in turn; a scanner never opens the archive itself. A scanner is pure: no
database, no network (clamd, on a local socket, is the one exception), no global state, so that the
same bytes and the same rules always give the same findings, and a rescan is needed only when a
scanner's ``version`` changes (its code or its rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Verdict(StrEnum):
    """A finding's weight, and an artifact's verdict (the worst of its findings)."""

    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK: Mapping[Verdict, int] = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.MALICIOUS: 2}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The heaviest of ``verdicts`` (clean when there are none)."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.CLEAN)


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that matched.

    ``rule`` is stable and namespaced by the scanner (``link-script:curl-pipe-shell``,
    ``yara:stockade_reverse_shell``); ``member`` is the archive member path it matched in
    (``info/recipe/post-link.sh``, ``lib/python3.11/site-packages/evil.pth``), or None for a
    finding about the package as a whole (its name, its hash); ``evidence`` is a short excerpt
    (at most ~200 characters, printable) that lets a security admin see why without downloading
    the package.
    """

    scanner: str
    rule: str
    verdict: Verdict
    member: str | None
    evidence: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanSubject:
    """What is known about the package before its members are read.

    ``index`` is the parsed ``info/index.json``; ``known_names`` are the names published in the
    organisation's own (local) channels, for the look-alike name check.
    """

    filename: str
    sha256: str
    size: int
    name: str
    subdir: str
    index: Mapping[str, Any]
    known_names: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Member:
    """One regular file of the archive.

    ``data`` is the file's content, or its first ``limit`` bytes when ``truncated`` (the engine caps
    what it keeps of one member); ``component`` is ``info`` or ``pkg`` for a ``.conda``, ``""`` for
    a ``.tar.bz2``. Links and directories are not shown (the structure check of SPEC §3 has
    already refused the unsafe ones).
    """

    path: str
    data: bytes
    size: int
    truncated: bool = False
    mode: int = 0o644
    component: str = ""


class Scanner(Protocol):
    """A scanner. ``version`` changes whenever its code or its rules change (it triggers rescans)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def wants(self, path: str) -> bool:
        """Whether this scanner needs to see the member at ``path`` (the engine skips the rest)."""
        ...

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        """Findings in one member; called once per wanted member, in archive order."""
        ...

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        """Findings about the package as a whole, after every member was shown (may be none)."""
        ...


class ScannerUnavailableError(Exception):
    """A scanner could not give a verdict (clamd down, rules failed to compile).

    The artifact's scan ends in ``error``, which holds it (fail closed) unless the channel says
    otherwise. The message never carries a secret.
    """
