"""Typed errors raised by the API clients, understood by the retry policy and by the error log.

Each class carries the `error_type` written to `sync_error_log.error_type` (a contract), so the
classification of a failure is decided once, where the failure is seen.
"""


class SyncError(Exception):
    """Base class. `error_type` is a sync_error_log error type; `retryable` drives tenacity."""

    error_type = "internal"
    retryable = False

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class TransientError(SyncError):
    """Connection error, read timeout, HTTP 5xx, Metakocka opr_code 1, malformed body on a read."""

    error_type = "transient"
    retryable = True


class RateLimitedError(TransientError):
    """HTTP 429 / Metakocka opr_code 5. `retry_after` (seconds) is honoured by the retry policy."""

    error_type = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float | None = None, details: dict | None = None
    ):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class AmbiguousWriteError(TransientError):
    """A create whose outcome is unknown (timeout, reset or 5xx after sending).

    Never retried blindly: the caller must look the document up by its external id first.
    """

    retryable = False


class MalformedResponseError(TransientError):
    """The server answered, but not with the JSON the API documents (HTML page, truncated body)."""


class AuthError(SyncError):
    """Bad credentials or a forbidden IP (HTTP 401/403, Metakocka opr_code 3/4). Not retryable."""

    error_type = "auth"


class RejectedError(SyncError):
    """The API refused the request (HTTP 4xx, Metakocka opr_code 2/6). Retrying will not help."""

    error_type = "rejected"


class DuplicateExternalIdError(RejectedError):
    """Metakocka's opt-in buyer-order check (opr_code 6, opr_code_app 7): the document exists.

    `existing_ids` are the `mk_id`s from `duplicate_doc_list`.
    """

    def __init__(self, message: str, *, existing_ids: list[str], details: dict | None = None):
        super().__init__(message, details=details)
        self.existing_ids = existing_ids


class NotFoundError(SyncError):
    """The document does not exist on the other side."""

    error_type = "not_found"
