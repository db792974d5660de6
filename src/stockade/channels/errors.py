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


class ArtifactNotFoundError(NotFoundError):
    code = "artifact:not-found"


class ChecksumMismatchError(InvalidInputError):
    code = "upload:sha256-mismatch"
