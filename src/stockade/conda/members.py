"""Rules on the members of a package archive: safe paths, allowed types, links that stay inside.

A package is extracted into a prefix by tools we do not control, so every member must name a path
inside it, by the one member-name rule of :func:`stockade.core.safezip.path_problem` (relative, no
``..``, no backslash, no NUL or other control character, valid UTF-8, at most 1024 characters).
A leading ``./`` of a tar member (what ``tar -C dir -c .`` writes) is accepted and dropped.
Symbolic links must resolve inside the package, following the package's own links on the way;
hard links must point to a regular file met earlier in the same tar. Devices, fifos, unknown member
types and setuid/setgid bits are refused.
"""

from __future__ import annotations

import tarfile
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from stockade.conda.errors import PackageValidationError, printable
from stockade.core.safezip import (
    PathProblem,
    ProblemKind,
    is_absolute,
    path_problem,
    text_problem,
)

MemberKind = Literal["file", "dir", "symlink", "hardlink"]

MAX_LINK_HOPS: Final = 40  # as Linux's limit on nested symbolic links
# Following links costs path components; a real package needs a handful per link.
MIN_RESOLUTION_STEPS: Final = 100_000
RESOLUTION_STEPS_PER_LINK: Final = 64

_RULES: Final = {
    ProblemKind.TRAVERSAL: "path-traversal",
    ProblemKind.UNSAFE: "unsafe-path",
    ProblemKind.ENCODING: "encoding",
}
_FILE_TYPES: Final = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_SPECIAL_TYPES: Final = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_UNSAFE_MODE_BITS: Final = 0o6000  # setuid, setgid


@dataclass(frozen=True)
class MemberRecord:
    """What validation keeps of one member: enough to compare with ``info/paths.json``."""

    path: str
    kind: MemberKind
    component: str  # "info" or "pkg" for a .conda, "" for a .tar.bz2
    size: int | None = None  # bytes of content (files and hard links)
    sha256: str | None = None
    target: str | None = None  # link target: as written for symlinks, normalized for hard links


def _refuse(problem: PathProblem | None, what: str, member: str) -> None:
    if problem is not None:
        raise PackageValidationError(
            _RULES[problem.kind], f"{what} {problem.detail}", member=member
        )


def check_path(raw: str, *, what: str = "member path", member: str | None = None) -> None:
    """Refuse the archive path ``raw`` if it breaks the one member-name rule, with
    ``package:path-traversal``, ``package:unsafe-path`` or ``package:encoding``."""
    _refuse(path_problem(raw), what, raw if member is None else member)


def normalize_path(raw: str, *, what: str = "member path", member: str | None = None) -> str:
    """Return the canonical form of the tar path ``raw`` ("" for the root), or raise.

    A leading ``./`` is dropped, then :func:`check_path` applies: ``package:path-traversal`` for
    an absolute path or a ``..`` component, ``package:unsafe-path`` for an empty or too long
    name, a backslash, a control character or an empty or ``.`` component, ``package:encoding``
    for a name that is not UTF-8.
    """
    path = raw
    while path.startswith("./"):
        path = path[2:]
    if raw and path in ("", "."):
        return ""
    check_path(path, what=what, member=raw if member is None else member)
    return path


def member_kind(info: tarfile.TarInfo, path: str) -> MemberKind:
    """Classify a tar member, refusing devices, fifos, unknown types and setuid/setgid bits."""
    kind: MemberKind
    if info.type in _FILE_TYPES:
        kind = "file"
    elif info.type == tarfile.DIRTYPE:
        kind = "dir"
    elif info.type == tarfile.SYMTYPE:
        kind = "symlink"
    elif info.type == tarfile.LNKTYPE:
        kind = "hardlink"
    else:
        what = _SPECIAL_TYPES.get(info.type, f"of unsupported tar type {info.type!r}")
        raise PackageValidationError("special-file", f"member is {what}", member=path)
    if kind in ("file", "dir") and info.mode & _UNSAFE_MODE_BITS:
        raise PackageValidationError(
            "special-file", "member has the setuid or setgid bit", member=path
        )
    return kind


def check_symlink_target(target: str, member: str) -> str:
    """Check the text of a symlink target; where it leads is checked by :func:`check_links`."""
    if target == "":
        raise PackageValidationError(
            "link-escape", "symbolic link has an empty target", member=member
        )
    _refuse(text_problem(target), "symbolic link target", member)
    if is_absolute(target):
        raise PackageValidationError(
            "link-escape",
            f"symbolic link points to the absolute path {printable(target)!r}",
            member=member,
        )
    return target


def check_hardlink_target(
    target: str, member: str, component: str, records: Mapping[str, MemberRecord]
) -> MemberRecord:
    """Return the record of the regular file a hard link points to, or raise ``link-escape``."""
    try:
        path = normalize_path(target, what="hard link target", member=member)
    except PackageValidationError as exc:
        raise PackageValidationError("link-escape", exc.detail, member=member) from None
    linked = records.get(path)
    if linked is None or linked.component != component or linked.kind not in ("file", "hardlink"):
        raise PackageValidationError(
            "link-escape",
            "hard link does not point to a regular file earlier in the same archive",
            member=member,
        )
    return linked


class _Node:
    """A path in a tree of the package's symbolic links: one lookup per path component."""

    __slots__ = ("children", "target")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.target: str | None = None


class _Resolver:
    """Resolves the package's symbolic links inside it, within a bounded number of steps."""

    def __init__(self, links: Mapping[str, str]) -> None:
        self.root = _Node()
        for path, target in links.items():
            node = self.root
            for part in path.split("/"):
                node = node.children.setdefault(part, _Node())
            node.target = target
        self.steps_left = MIN_RESOLUTION_STEPS + RESOLUTION_STEPS_PER_LINK * len(links)

    def resolve(self, path: str, target: str) -> bool:
        """Whether ``path -> target`` stays inside the package, following its links on the way."""
        queue = deque(path.split("/")[:-1] + target.split("/"))
        nodes: list[_Node | None] = []  # per component walked: its node, None if no link below
        hops = 0
        while queue:
            self.steps_left -= 1
            part = queue.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not nodes:
                    return False
                nodes.pop()
                continue
            parent = nodes[-1] if nodes else self.root
            node = None if parent is None else parent.children.get(part)
            if node is not None and node.target is not None and queue:
                hops += 1
                if hops > MAX_LINK_HOPS or self.steps_left < 0 or node.target.startswith("/"):
                    return False
                queue.extendleft(reversed(node.target.split("/")))
                continue
            nodes.append(node)
        return True


def check_links(records: Mapping[str, MemberRecord]) -> None:
    """Refuse symbolic links that resolve outside the package (``package:link-escape``).

    Intermediate components that are themselves links of the package are followed, so a chain of
    links that are each harmless on their own cannot climb out. A dangling link inside is allowed.
    Loops, and chains too long to follow within the step budget, are refused too.
    """
    links = {p: r.target for p, r in records.items() if r.kind == "symlink" and r.target}
    resolver = _Resolver(links)
    for path, target in links.items():
        if not resolver.resolve(path, target):
            raise PackageValidationError(
                "link-escape",
                f"symbolic link to {printable(target)!r} resolves outside the package (or loops)",
                member=path,
            )
