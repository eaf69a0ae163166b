"""The wire format: request types, decoding, and the reply and event envelopes.

Every request is a JSON object whose ``action`` field picks one of the
``msgspec`` structs below; decoding validates types and required fields, so a
wrong type or a missing field becomes ``bad_request`` naming the field with no
hand-written checks. The same structs generate docs/protocol.schema.json.
Limits that an operator can configure (lengths, counts) are checked by the
services, not here.
"""

import re
from typing import Annotated, Any, Union

import msgspec

from chatd.errors import ChatError, ErrorCode, bad_request

_MAX_INT = 2**63 - 1
_MAX_ID_LENGTH = 128

#: A server-assigned id: a positive 64-bit integer.
Id = Annotated[int, msgspec.Meta(ge=1, le=_MAX_INT)]
#: The id a client gives a request, echoed in its reply.
RequestId = (
    Annotated[str, msgspec.Meta(max_length=128)]
    | Annotated[int, msgspec.Meta(ge=-_MAX_INT, le=_MAX_INT)]
)
#: A client's own id for a message, used to recognise a retry.
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Request(msgspec.Struct, tag_field="action", kw_only=True):
    """Fields common to every request."""

    id: RequestId | None = None


class Register(Request, tag="register"):
    """Create an account and log this connection in."""

    username: str
    password: str
    nickname: str | None = None


class Login(Request, tag="login"):
    """Log in with a username and password."""

    username: str
    password: str


class Resume(Request, tag="resume"):
    """Log in again with the token of an earlier login."""

    session_token: str


class Logout(Request, tag="logout"):
    """End this session and revoke its token."""


class ChangePassword(Request, tag="change_password"):
    """Set a new password; every other session of the user is closed."""

    old_password: str
    new_password: str


class SendMessage(Request, tag="send_message"):
    """Send a message to a friend (``to_user``) or a group (``group_id``)."""

    content: str
    to_user: Id | None = None
    group_id: Id | None = None
    client_msg_id: ClientMsgId | None = None


class Ack(Request, tag="ack"):
    """Move the delivery cursor: every message up to ``up_to`` has arrived."""

    up_to: Annotated[int, msgspec.Meta(ge=0, le=_MAX_INT)]


class GetHistory(Request, tag="get_history"):
    """Read a page of a conversation, newest first from ``before_id``."""

    with_user: Id | None = None
    group_id: Id | None = None
    before_id: Id | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=_MAX_INT)] | None = None


class CreateGroup(Request, tag="create_group"):
    """Create a group of the caller and some of their friends."""

    name: str
    members: list[Id] = msgspec.field(default_factory=list)


class GetGroups(Request, tag="get_groups"):
    """List the caller's groups."""


class GetGroupMembers(Request, tag="get_group_members"):
    """List the members of one of the caller's groups."""

    group_id: Id


class LeaveGroup(Request, tag="leave_group"):
    """Leave a group; its messages stop arriving."""

    group_id: Id


class SendFriendRequest(Request, tag="send_friend_request"):
    """Ask another user, by username, to become friends."""

    username: str


class RespondFriendRequest(Request, tag="respond_friend_request"):
    """Accept or reject a friend request addressed to the caller."""

    request_id: Id
    accept: bool


class GetPendingRequests(Request, tag="get_pending_requests"):
    """List the caller's pending friend requests, both ways."""


class GetFriends(Request, tag="get_friends"):
    """List the caller's friends with their online state."""


class RemoveFriend(Request, tag="remove_friend"):
    """End a friendship."""

    user_id: Id


class UpdateNickname(Request, tag="update_nickname"):
    """Change the caller's nickname; friends are told."""

    nickname: str


class GetOnlineUsers(Request, tag="get_online_users"):
    """List who is online, within the server's presence scope."""


class Ping(Request, tag="ping"):
    """Do nothing and answer; lets clients synchronise."""


REQUEST_TYPES = (
    Register,
    Login,
    Resume,
    Logout,
    ChangePassword,
    SendMessage,
    Ack,
    GetHistory,
    CreateGroup,
    GetGroups,
    GetGroupMembers,
    LeaveGroup,
    SendFriendRequest,
    RespondFriendRequest,
    GetPendingRequests,
    GetFriends,
    RemoveFriend,
    UpdateNickname,
    GetOnlineUsers,
    Ping,
)
AnyRequest = Union[REQUEST_TYPES]  # noqa: UP007 (a tuple cannot be spelled with |)
ACTIONS = frozenset(t.__struct_config__.tag for t in REQUEST_TYPES)


class _Envelope(msgspec.Struct):
    """Just enough of a request to echo ``id`` and ``action`` in an error."""

    id: Any = None
    action: Any = None


class DecodeFailure(Exception):
    """A frame that is not a valid request, with what can be echoed of it."""

    def __init__(self, error: ChatError, request_id: Any, action: str | None):
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id
        self.action = action


_decoder = msgspec.json.Decoder(AnyRequest)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def _field_of(text: str) -> str:
    """Name the field a msgspec validation message is about (``members[1]``)."""
    path = ""
    match = _PATH.search(text)
    if match:
        path = match.group("path").lstrip(".")
    missing = _MISSING.search(text)
    if missing:
        path = f"{path}.{missing.group('name')}" if path else missing.group("name")
    return path or "request"


def echo_of(payload: bytes) -> tuple[Any, str | None]:
    """Recover what can be echoed (id, action) of a frame refused unread."""
    try:
        envelope = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None, None
    request_id = envelope.id
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        request_id = None
    elif isinstance(request_id, int) and abs(request_id) > _MAX_INT:
        request_id = None
    elif isinstance(request_id, str) and len(request_id) > _MAX_ID_LENGTH:
        request_id = None
    # The action may be any JSON value, a list or an object included: only
    # a string can be looked up (an unhashable one raised TypeError).
    action = envelope.action
    if not isinstance(action, str) or action not in ACTIONS:
        action = None
    return request_id, action


def decode_request(payload: bytes) -> Request:
    """Decode one text frame into a request struct.

    Raises:
        DecodeFailure: with ``bad_json``, ``bad_request`` or ``unknown_action``.
    """
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as error:
        text = str(error)
        field = _field_of(text)
        request_id, action = echo_of(payload)
        if field == "action" and text.startswith("Invalid value"):
            chat_error = ChatError(ErrorCode.UNKNOWN_ACTION, "unknown action")
        else:
            chat_error = bad_request(field, _describe(text))
        raise DecodeFailure(chat_error, request_id, action) from None
    except (msgspec.DecodeError, RecursionError):
        message = "the frame is not a valid JSON object"
        error = ChatError(ErrorCode.BAD_JSON, message)
        raise DecodeFailure(error, None, None) from None


def _describe(text: str) -> str:
    """Word a msgspec message for a client, without its path suffix."""
    return _PATH.sub("", text).replace("Object missing", "missing")


_ACTION_OF = {t: t.__struct_config__.tag for t in REQUEST_TYPES}


def action_of(request: Request) -> str:
    """Return the action name of a decoded request."""
    return _ACTION_OF[type(request)]


def encode(value: Any) -> bytes:
    """Encode a reply or event (dicts, lists and the view structs) as JSON."""
    return _encoder.encode(value)


def reply_ok(request_id: Any, action: str | None, data: Any) -> bytes:
    """Encode a successful reply."""
    return _encoder.encode(
        {"type": "reply", "id": request_id, "action": action, "ok": True, "data": data}
    )


def reply_error(request_id: Any, action: str | None, error: ChatError) -> bytes:
    """Encode an error reply."""
    return _encoder.encode(
        {
            "type": "reply",
            "id": request_id,
            "action": action,
            "ok": False,
            "error": error.as_dict(),
        }
    )


def event(name: str, data: Any) -> bytes:
    """Encode an event: a push that no request asked for."""
    return _encoder.encode({"type": "event", "event": name, "data": data})
