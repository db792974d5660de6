"""Errors of air-gap bundles, with stable codes (``airgap:…``)."""

from __future__ import annotations

from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError
from stockade.core.safezip import shown


class BundleRefusedError(InvalidInputError):
    """A package bundle that is unsafe, broken, not signed by a trusted key, or cannot be applied
    here (its parent was never imported). The bundle is moved aside with this reason."""

    code = "airgap:bundle-refused"
    title = "Air-gap bundle refused"

    def __init__(self, detail: str, *, code: str | None = None, member: str | None = None) -> None:
        shown_member = None if member is None else shown(member)  # names from the bundle
        super().__init__(f"{shown_member}: {detail}" if member else detail, code=code)
        if shown_member is not None:
            self.extra["member"] = shown_member


class AirgapFolderError(ConflictError):
    """The air-gap folder cannot be used safely (``applied/`` or ``refused/`` is a link or
    not a folder): nothing is moved until an administrator fixes it."""

    code = "airgap:unsafe-folder"


class ExportNotFoundError(NotFoundError):
    code = "airgap:export-not-found"


class ExportFileGoneError(ConflictError):
    """A file listed in an export is no longer servable (quarantined or deleted since)."""

    code = "airgap:file-gone"


class BadExportRequestError(InvalidInputError):
    code = "airgap:bad-export"
