"""Errors of the audit log's export, with stable codes (``audit:…``)."""

from __future__ import annotations

from stockade.core.errors import ConflictError, InvalidInputError


class AuditExportFolderError(InvalidInputError):
    """The export folder cannot be used: missing and not creatable, not a folder, a link, or its
    state file is not what this exporter wrote."""

    code = "audit:export-folder"
    title = "Audit export folder unusable"


class AuditChainBrokenError(ConflictError):
    """The events to export (or an exported file) do not continue the hash chain: an event was
    changed, removed or reordered. Nothing past the break is exported."""

    code = "audit:chain-broken"
    title = "Audit chain broken"
