"""Checks on the text users give: names, nicknames, message content.

Limits come from the configuration, so they are checked here rather than in
the wire types. Text with NUL or other control characters is refused where
it would be shown as a name; message content may hold newlines and tabs.
"""

import re
import unicodedata

from chatd.errors import ChatError, ErrorCode, bad_request

_USERNAME = re.compile(r"[A-Za-z0-9_.\-]+")
# Unicode category Cc (C0, DEL, C1) and unpaired surrogates.
# In names, also the bidirectional overrides and isolates, which can make a
# displayed name read as another (U+202A-U+202E, U+2066-U+2069).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_WHITESPACE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]"
)


def username_key(username: str) -> str:
    """The form two usernames are compared in: NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", username).casefold()


def check_username(username: str, minimum: int, maximum: int) -> str:
    """Return the username if it is well-formed, else raise bad_request."""
    if not minimum <= len(username) <= maximum:
        raise bad_request("username", f"must be {minimum} to {maximum} characters")
    if not _USERNAME.fullmatch(username):
        raise bad_request("username", "may hold only letters, digits, '_', '.', '-'")
    return username


def check_password(password: str, minimum: int, maximum: int, field: str) -> str:
    """Return the password if its UTF-8 length is within the limits."""
    size = len(password.encode("utf-8", "surrogatepass"))
    if size < minimum:
        raise bad_request(field, f"must be at least {minimum} bytes")
    if size > maximum:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"{field}: at most {maximum} bytes", field=field
        )
    return password


def check_name(text: str, field: str, maximum: int) -> str:
    """Check a display name (nickname, group name): 1 to ``maximum``
    characters, not blank, no control characters. Returns it stripped."""
    text = text.strip()
    if not text:
        raise bad_request(field, "must not be empty")
    if len(text) > maximum:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"{field}: at most {maximum} characters", field=field
        )
    if _CONTROL.search(text):
        raise bad_request(field, "must not contain control characters")
    return text


def check_content(content: str, maximum: int) -> str:
    """Check message content: 1 to ``maximum`` characters, no NUL or other
    control characters but newline, carriage return and tab."""
    if not content.strip():
        raise bad_request("content", "must not be empty")
    if len(content) > maximum:
        raise ChatError(
            ErrorCode.TOO_LARGE,
            f"content: at most {maximum} characters",
            field="content",
        )
    if _CONTROL_BUT_WHITESPACE.search(content):
        raise bad_request("content", "must not contain control characters")
    return content
