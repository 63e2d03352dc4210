"""The exception tree: every error the library raises derives from AsyncBlobDictError."""

from __future__ import annotations

__all__ = [
    "AsyncBlobDictError",
    "BatchError",
    "AuthenticationError",
    "BlobNotFoundError",
    "ConcurrencyError",
    "InvalidKeyError",
    "InvalidTTLError",
    "OutcomeUnknownError",
    "SerializationError",
    "StorageError",
]


def _where(container: str | None, key: str | None) -> str:
    if container is None and key is None:
        return ""
    if key is None:
        return f" [container {container!r}]"
    if container is None:
        return f" [key {key!r}]"
    return f" [container {container!r}, key {key!r}]"


class AsyncBlobDictError(Exception):
    """Base class of every error asyncblobdict raises.

    ``container`` and ``key`` name what the failed operation touched (None when not
    applicable); they also appear in the message.
    """

    def __init__(
        self, message: str, *, container: str | None = None, key: str | None = None
    ) -> None:
        self.message = message
        self.container = container
        self.key = key
        super().__init__(message + _where(container, key))

    def __str__(self) -> str:
        return self.message + _where(self.container, self.key)


class BlobNotFoundError(AsyncBlobDictError, KeyError):
    """The key does not exist (also a KeyError)."""

    # KeyError.__str__ would repr() the message; keep the plain text.
    __str__ = AsyncBlobDictError.__str__


class ConcurrencyError(AsyncBlobDictError):
    """A conditional write or delete lost a race: the stored version is not the one expected.

    Storage is unchanged when this is raised.
    """


class InvalidKeyError(AsyncBlobDictError, ValueError):
    """A key or container name breaks the naming rules; raised before any I/O."""


class InvalidTTLError(AsyncBlobDictError, ValueError):
    """A ``ttl=`` is not a finite duration > 0 (seconds or a timedelta), or is too large;
    raised before any I/O."""


class SerializationError(AsyncBlobDictError, ValueError):
    """A value cannot be encoded, or stored bytes cannot be decoded as requested."""


class StorageError(AsyncBlobDictError):
    """The backend failed: disk full, permission denied, network down, an unexpected HTTP answer.

    For HTTP backends ``status``, ``error_code`` and ``request_id`` carry the service's answer.
    """

    def __init__(
        self,
        message: str,
        *,
        container: str | None = None,
        key: str | None = None,
        status: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.request_id = request_id
        details = [
            f"{name}={value}"
            for name, value in (
                ("status", status),
                ("code", error_code),
                ("request_id", request_id),
            )
            if value is not None
        ]
        if details:
            message = f"{message} ({', '.join(details)})"
        super().__init__(message, container=container, key=key)


class AuthenticationError(StorageError):
    """The backend refused the credentials or the permission (HTTP 401/403)."""


class OutcomeUnknownError(StorageError):
    """A write or delete may or may not have been applied, and it could not be proven which.

    Raised after an attempt whose answer was lost (a dropped connection, a timeout, a 5xx)
    when a check of the stored version afterwards shows neither the version the write was
    conditioned on (so it was not simply lost) nor the write's own token (so it did not
    provably land): another writer changed the key meanwhile. The store never re-applies an
    ``update_json`` function after this error; read the key again to see what it holds.
    """


class BatchError(AsyncBlobDictError):
    """Some keys of a batch failed; every other key was still done.

    ``errors`` maps each failed key to its exception (one of this tree); ``results`` holds
    what the batch produced for the keys that succeeded (the values, for ``get_many``).
    """

    def __init__(
        self,
        message: str,
        errors: dict[str, AsyncBlobDictError],
        results: dict[str, object],
        *,
        container: str | None = None,
    ) -> None:
        self.errors = errors
        self.results = results
        shown = ", ".join(f"{key!r}: {type(exc).__name__}" for key, exc in list(errors.items())[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        super().__init__(f"{message}: {shown}{more}", container=container)
