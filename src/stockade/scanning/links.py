"""Links inside a package: what a symbolic or hard link makes a path hold once it is installed.

conda runs ``bin/.NAME-post-link.sh`` and Python reads ``site-packages/x.pth`` through the file
system, so a link at such a path runs its target's content: a package can put ``curl … | sh`` in
``share/x/notes.txt`` and make ``bin/.x-post-link.sh`` a link to it, or make ``bin`` itself a link
to a directory holding the script. The engine shows members by their own path, and links are not
members with content, so :class:`LinkAliases` resolves each link inside the package (chains and
linked directories included, as the file system would) and gives every path a link creates that a
path-specific scanner (link scripts, Python) wants, with its target's content, once the archive is
read. A target it cannot show (outside the package, in another package, too large to have been
kept, a loop) at such a path is a ``malicious`` finding: what that path runs was never judged, a
real package never links its link script elsewhere, and a ``suspicious`` one is served by default.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from stockade.scanning.interfaces import Finding, Member, Verdict

UNRESOLVED_RULE: Final = "structure:unresolved-link"
KEEP_MEMBER_BYTES: Final = 256 * 1024  # scripts and .pth files are far smaller
KEEP_TOTAL_BYTES: Final = 16 * 1024**2  # per archive
MAX_HOPS: Final = 40
# A path no path-specific scanner wants: a scanner that wants it wants every path (YARA, clamd,
# hashes) and already sees every target under its own name.
PROBE_PATH: Final = "\x00stockade-probe"


@dataclass(frozen=True, slots=True)
class _Regular:
    size: int
    mode: int
    component: str


class LinkAliases:
    """Collects the archive's links and small files; :meth:`aliases` after the last member."""

    def __init__(self) -> None:
        self.symlinks: dict[str, str] = {}
        self.hardlinks: dict[str, str] = {}
        self.components: dict[str, str] = {}
        self.regular: dict[str, _Regular] = {}
        self.kept: dict[str, bytes] = {}
        self._kept_bytes = 0

    @property
    def any(self) -> bool:
        return bool(self.symlinks or self.hardlinks)

    def link(self, path: str, target: str, *, symbolic: bool, component: str) -> None:
        (self.symlinks if symbolic else self.hardlinks)[path] = target
        self.components[path] = component

    def file(self, path: str, size: int, mode: int, component: str) -> None:
        self.regular[path] = _Regular(size, mode, component)

    def wants_content(self, size: int) -> bool:
        return size <= KEEP_MEMBER_BYTES and self._kept_bytes + size <= KEEP_TOTAL_BYTES

    def keep(self, path: str, data: bytes, size: int) -> None:
        if len(data) == size and self.wants_content(size):
            self.kept[path] = data
            self._kept_bytes += size

    def aliases(self, wanted: Callable[[str], bool]) -> Iterator[Member | Finding]:
        """Each path a link creates that ``wanted`` (by a path-specific scanner): a
        :class:`Member` with its target's content, or a suspicious :class:`Finding`."""
        if not self.any:
            return
        ordered = sorted(self.regular)
        for link, target in self._links():
            resolved = self._resolve(target)
            for alias, source in self._created(link, resolved, ordered):
                if wanted(alias):
                    yield self._member_or_finding(alias, source, link)
        for path in ordered:  # a file written through a linked directory: bin -> x, x/.y.sh
            resolved = self._resolve(path.split("/"))
            if resolved is not None and resolved != path and wanted(resolved):
                yield self._member_or_finding(resolved, path, path)

    def _links(self) -> Iterator[tuple[str, list[str]]]:
        for link, target in self.symlinks.items():
            yield link, [*link.split("/")[:-1], *target.split("/")]
        for link, target in self.hardlinks.items():
            yield link, target.split("/")

    def _created(
        self, link: str, resolved: str | None, ordered: list[str]
    ) -> Iterator[tuple[str, str | None]]:
        """(path the link creates, the regular file it holds, None when unknown)."""
        if resolved is None:
            yield link, None
            return
        if resolved in self.regular:
            yield link, resolved
            return
        prefix = resolved + "/" if resolved else ""
        start = bisect.bisect_left(ordered, prefix)
        found = False
        for path in ordered[start:]:
            if not path.startswith(prefix):
                break
            found = True
            yield link + "/" + path[len(prefix) :], path
        if not found:
            yield link, None

    def _resolve(self, parts: list[str]) -> str | None:
        """The path ``parts`` leads to inside the package, following its symbolic links
        component by component as the file system does; None when it leaves the package."""
        queue = deque(parts)
        stack: list[str] = []
        hops = 0
        while queue:
            part = queue.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    return None
                stack.pop()
                continue
            target = self.symlinks.get("/".join([*stack, part]))
            if target is None:
                stack.append(part)
                continue
            hops += 1
            if hops > MAX_HOPS or target.startswith("/"):
                return None
            queue.extendleft(reversed(target.split("/")))
        return "/".join(stack)

    def _member_or_finding(self, alias: str, source: str | None, link: str) -> Member | Finding:
        data = self.kept.get(source) if source is not None else None
        if source is None or data is None:
            shown = self.symlinks.get(link) or self.hardlinks.get(link) or link
            return Finding(
                "structure",
                UNRESOLVED_RULE,
                Verdict.MALICIOUS,
                alias,
                f"{alias} is a link the scanners cannot follow (to {shown})"[:200],
                {"reason": "a link at a path conda or Python runs, to content not read"},
            )
        regular = self.regular[source]
        component = self.components.get(link, regular.component)
        return Member(alias, data, regular.size, False, regular.mode, component)
