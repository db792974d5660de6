from stockade.core.errors import NotFoundError, StockadeError


class BlobNotFoundError(NotFoundError):
    code = "blob:not-found"


class BlobIntegrityError(StockadeError):
    code = "blob:integrity"
    title = "Stored bytes do not match their hash"
