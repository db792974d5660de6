"""Errors of air-gap bundles, with stable codes (``airgap:…``)."""

from __future__ import annotations

from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError


class BundleRefusedError(InvalidInputError):
    """A package bundle that is unsafe, broken, not signed by a trusted key, or cannot be applied
    here (its parent was never imported). The bundle is moved aside with this reason."""

    code = "airgap:bundle-refused"
    title = "Air-gap bundle refused"

    def __init__(self, detail: str, *, code: str | None = None, member: str | None = None) -> None:
        super().__init__(f"{member}: {detail}" if member else detail, code=code)
        if member is not None:
            self.extra["member"] = member


class ExportNotFoundError(NotFoundError):
    code = "airgap:export-not-found"


class ExportFileGoneError(ConflictError):
    """A file listed in an export is no longer servable (quarantined or deleted since)."""

    code = "airgap:file-gone"


class BadExportRequestError(InvalidInputError):
    code = "airgap:bad-export"
