"""What one feed sync did (``vulns.feedsync``, ``vulns.nvd_api``): counts, and the first errors."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ERRORS_KEPT", "SyncCounts"]

ERRORS_KEPT = 20  # documents that did not parse, named in the feed's last_error


@dataclass
class SyncCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    failed: int = 0
    matches_added: int = 0
    matches_removed: int = 0
    matches_restatused: int = 0
    enriched: int = 0  # kev/epss: entries in the document
    not_modified: bool = False
    errors: list[str] = field(default_factory=list)

    def document_failed(self, name: str, detail: str) -> None:
        self.failed += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(f"{name}: {detail}")
