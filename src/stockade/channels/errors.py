from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError


class ChannelNotFoundError(NotFoundError):
    code = "channel:not-found"


class ChannelExistsError(ConflictError):
    code = "channel:exists"


class InvalidChannelNameError(InvalidInputError):
    code = "channel:invalid-name"


class ChannelFrozenError(ConflictError):
    code = "channel:frozen"


class ArtifactExistsError(ConflictError):
    code = "artifact:exists"


class ChannelHoldsQuarantinedError(ConflictError):
    """A channel with files in the quarantine queue is deleted by security staff only."""

    code = "channel:holds-quarantined"


class ArtifactHeldError(ConflictError):
    """A file the scanners hold (quarantined, or held suspicious or unjudged) is not replaced
    by an upload: only a security admin releases or deletes it (the quarantine queue)."""

    code = "artifact:held"


class ArtifactNotFoundError(NotFoundError):
    code = "artifact:not-found"


class ChecksumMismatchError(InvalidInputError):
    code = "upload:sha256-mismatch"
