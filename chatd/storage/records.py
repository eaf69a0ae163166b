"""Plain records the store returns: rows with names, no behaviour."""

import msgspec


class UserRecord(msgspec.Struct, frozen=True):
    """An account."""

    id: int
    username: str
    nickname: str
    password_hash: bytes
    created_at: int
    delivered_up_to: int


class MessageRecord(msgspec.Struct, frozen=True):
    """A stored message, with its sender's current name."""

    id: int
    sender_id: int
    sender_username: str
    sender_nickname: str
    to_user_id: int | None
    group_id: int | None
    content: str
    sent_at: int
    client_msg_id: str | None


class NewMessage(msgspec.Struct, frozen=True):
    """A message on its way into the store."""

    sender_id: int
    to_user_id: int | None
    group_id: int | None
    content: str
    sent_at: int
    client_msg_id: str | None


class WriteResult(msgspec.Struct, frozen=True):
    """What became of one ``NewMessage``.

    ``outcome`` is ``created``, ``duplicate`` (a retry of a stored message,
    which ``message`` is), ``not_friends`` or ``not_member``. For group
    messages, ``recipients`` are the members at commit time.
    """

    outcome: str
    message: MessageRecord | None = None
    recipients: tuple[int, ...] = ()


class GroupRecord(msgspec.Struct, frozen=True):
    """A group chat."""

    id: int
    name: str
    owner_id: int
    created_at: int


class FriendRequestRecord(msgspec.Struct, frozen=True):
    """A friend request between two users."""

    id: int
    from_id: int
    to_id: int
    status: str
    created_at: int
