"""The one error type chatd answers with, and its stable machine codes.

Every expected failure anywhere in chatd is a ``ChatError``; the server turns
it into an error reply. Anything else that escapes a handler is a bug: it is
logged with its traceback and answered ``internal_error``.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    """The error codes of the wire protocol (docs/protocol.md lists them)."""

    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    UNKNOWN_ACTION = "unknown_action"
    NOT_AUTHENTICATED = "not_authenticated"
    ALREADY_AUTHENTICATED = "already_authenticated"
    BAD_CREDENTIALS = "bad_credentials"
    USERNAME_TAKEN = "username_taken"
    NOT_FOUND = "not_found"
    NOT_FRIENDS = "not_friends"
    NOT_MEMBER = "not_member"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


class ChatError(Exception):
    """An expected failure, answered to the client as an error reply.

    Args:
        code: The machine-readable code.
        message: A sentence for people; it must not contain internals.
        field: The request field at fault, for ``bad_request`` and friends.
    """

    def __init__(self, code: ErrorCode, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def as_dict(self) -> dict:
        """Return the ``error`` object of the reply."""
        error = {"code": str(self.code), "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return error


def bad_request(field: str, message: str) -> ChatError:
    """Build a ``bad_request`` error that names the field at fault."""
    return ChatError(ErrorCode.BAD_REQUEST, f"{field}: {message}", field=field)
