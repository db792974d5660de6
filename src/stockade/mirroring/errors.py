from stockade.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StockadeError,
    TooManyRequestsError,
)


class MirrorNotFoundError(NotFoundError):
    code = "mirror:not-found"


class MirrorExistsError(ConflictError):
    code = "mirror:exists"


class InvalidMirrorError(InvalidInputError):
    code = "mirror:invalid"


class SourceCheckError(InvalidMirrorError):
    """The source given for a new mirror is not a conda channel we can reach (checked at
    creation unless asked not to)."""

    code = "mirror:source-check"


class RunNotFoundError(NotFoundError):
    code = "mirror:run-not-found"


class RunActiveError(ConflictError):
    code = "mirror:run-active"


class RunFinishedError(ConflictError):
    code = "mirror:run-finished"


class RunStoppedError(StockadeError):
    """Raised inside a run when a stop was asked for; the run ends ``stopped``."""

    code = "mirror:stopped"


class LeaseLostError(StockadeError):
    """Raised inside a run when another worker took it over (this one was thought dead)."""

    code = "mirror:lease-lost"


class ShuttingDownError(StockadeError):
    """Raised inside a run when its process shuts down: the run is released for another worker."""

    code = "mirror:shutdown"


class NoSnapshotError(ConflictError):
    """Dry runs and explain read the last run's upstream snapshot; this mirror has none yet."""

    code = "mirror:no-snapshot"


class PreviewBusyError(TooManyRequestsError):
    code = "policy:busy"


class IncompleteRunError(InvalidInputError):
    """An all-or-nothing run (an air-gap bundle) in which a file could not be taken."""

    code = "airgap:incomplete"
