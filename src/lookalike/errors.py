"""Errors that name the problem, so every face (CLI, API) can show them as one clear line.

Every error lookalike raises on purpose derives from :class:`LookalikeError`; anything else is a bug.
"""


class LookalikeError(Exception):
    """Base of all expected failures: bad input, missing files, mismatched models.

    ``reason`` names the cause more finely than the class where a client would word it differently (a link
    that is a web page, not a picture: ``not_an_image``); the API passes it on as ``error.reason``."""

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ImageError(LookalikeError):
    """An input could not be used as an image (corrupt, truncated, not an image, too large)."""


class ModelError(LookalikeError):
    """A model could not be loaded or exported (missing weights, bad ONNX file or sidecar)."""


class IndexError_(LookalikeError):
    """The index is missing, unreadable, or asked to do something it cannot.

    The base of every index failure; catch a subclass to tell them apart: :class:`IndexRequestError` (the
    caller's request is wrong: fix the input), :class:`BackendUnavailableError` (the server is away: retry),
    :class:`IndexFormatError` (the stored index is not one this release can read: upgrade)."""


class IndexRequestError(IndexError_):
    """The request itself is refused: a bad item, id, k, or settings. Retrying it unchanged never helps (400)."""


class IndexFormatError(IndexError_):
    """The stored index was written in a form this release does not know (newer settings keys, a newer
    store schema): most likely a newer lookalike made it, so upgrading lookalike is the fix."""


class BackendUnavailableError(IndexError_):
    """The index server (OpenSearch, Milvus) cannot be reached or is overloaded: not the caller's fault (503)."""


class ModelMismatchError(IndexError_):
    """The index was built with another model (or dimension, or preprocessing) than the one in use."""


class VectorSizeError(IndexRequestError):
    """A vector's dimension does not match the index."""


class FilterError(LookalikeError):
    """A metadata filter is malformed."""


class SourceError(LookalikeError):
    """A catalogue source (folder, manifest, bucket, URL) cannot be read."""


class FetchError(SourceError):
    """A URL could not be fetched (unreachable, refused, too large, wrong content type)."""


class BlockedURLError(FetchError):
    """A URL was refused before fetching: a scheme other than http(s), or an internal address."""


class PayloadTooLargeError(LookalikeError):
    """A request body or upload is larger than the server accepts."""


class NotFoundError(LookalikeError):
    """An item id is not in the index."""


class NotCalibratedError(LookalikeError):
    """The index has no match calibration for its settings (needed by tiers filters and duplicates)."""


class BusyError(LookalikeError):
    """The server is at its bound for this kind of work (URL fetches, image decodes): retry shortly (503)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
