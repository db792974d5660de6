from stockade.core.errors import NotFoundError, StockadeError, UnavailableError


class BlobNotFoundError(NotFoundError):
    code = "blob:not-found"


class BlobIntegrityError(StockadeError):
    code = "blob:integrity"
    title = "Stored bytes do not match their hash"


class DataFolderError(StockadeError):
    """The data folder cannot be created or made private (another owner, a read-only mount)."""

    code = "storage:data-folder"
    title = "Data folder not usable"


class BlobStoreUnavailableError(UnavailableError):
    """The object store answered with an error other than "not found" (access denied, no such
    bucket, throttling, a network failure): never taken for a missing blob."""

    code = "storage:unavailable"
    title = "Blob store unavailable"


class BackupError(StockadeError):
    """A backup or a restore cannot be made (a tool missing, a folder not empty, a database
    of another kind); the detail says which and what to do."""

    code = "backup:failed"
    title = "Backup or restore failed"
