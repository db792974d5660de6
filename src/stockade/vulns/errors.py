"""Errors of the vulnerability domain.

Every error names what failed: a feed error the record (``CVE-2024-1234``, ``PYSEC-2021-76``) and the
field (``affected[0].ranges[1].events``), a vector error the vector, a name-map error the entry.
"""

from __future__ import annotations

from stockade.conda.errors import printable
from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError


class FeedError(InvalidInputError):
    """A feed document or one of its records breaks the feed's format."""

    code = "vulns:bad-feed"
    title = "Invalid vulnerability feed"

    def __init__(self, detail: str, *, record: str | None = None, field: str | None = None) -> None:
        where = ", ".join(
            part
            for part in (
                f"record {printable(record)}" if record else "",
                f"field {field}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {detail}" if where else detail)
        self.record = record
        self.field = field
        if record is not None:
            self.extra["record"] = printable(record)
        if field is not None:
            self.extra["field"] = field


class InvalidVectorError(InvalidInputError):
    """A CVSS vector string the scoring library rejects, or of an unknown CVSS version."""

    code = "vulns:bad-vector"
    title = "Invalid CVSS vector"

    def __init__(self, vector: str, reason: str) -> None:
        super().__init__(f"CVSS vector {printable(vector)!r}: {reason}", vector=printable(vector))
        self.vector = vector


class NameMapError(InvalidInputError):
    """A name-map entry or import file that cannot be read."""

    code = "vulns:bad-name-map"
    title = "Invalid name map"


class VulnerabilityNotFoundError(NotFoundError):
    code = "vulns:not-found"


class FeedNotFoundError(NotFoundError):
    code = "vulns:feed-not-found"


class FeedExistsError(ConflictError):
    code = "vulns:feed-exists"


class FeedFetchError(InvalidInputError):
    """A feed URL that cannot be fetched (network, HTTP status, missing file)."""

    code = "vulns:fetch-failed"
    title = "Feed fetch failed"


class FeedUnreachableError(FeedFetchError):
    """The feed's host gave no answer (name not resolved, no connection, timeout): the feed shows
    ``unreachable`` (``vulns.feed_state``), not ``failed``."""

    code = "vulns:feed-unreachable"
    title = "Feed unreachable"

    def __init__(self, detail: str, *, reason: str = "") -> None:
        super().__init__(detail)
        self.reason = reason  # how the connection failed: for the log, never for the API


class FeedSourceError(InvalidInputError):
    """A feed source checked at creation (``vulns.feed_check``) that cannot be used: the reason is
    in ``detail``, the URL redacted."""

    code = "vulns:feed-source-check"
    title = "Feed source cannot be used"


class WebhookNotFoundError(NotFoundError):
    code = "webhook:not-found"


class DeliveryNotFoundError(NotFoundError):
    code = "webhook:delivery-not-found"
