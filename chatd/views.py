"""The objects the protocol sends: users, messages, groups, friend requests.

They are ``msgspec`` structs so that replies and events encode without an
intermediate dict, and so that docs/protocol.schema.json can describe them.
"""

import msgspec

from chatd.clock import iso_time
from chatd.storage.records import (
    FriendRequestRecord,
    GroupRecord,
    MessageRecord,
    UserRecord,
)


class UserView(msgspec.Struct):
    """A user as others see them."""

    id: int
    username: str
    nickname: str
    online: bool


class SenderView(msgspec.Struct):
    """The author of a message."""

    id: int
    username: str
    nickname: str


class MessageView(msgspec.Struct):
    """A stored message; exactly one of ``to_user`` and ``group_id`` is set."""

    id: int
    sender: SenderView
    to_user: int | None
    group_id: int | None
    content: str
    sent_at: str
    client_msg_id: str | None


class GroupView(msgspec.Struct):
    """A group with its members."""

    id: int
    name: str
    owner_id: int
    created_at: str
    members: list[UserView]


class FriendRequestView(msgspec.Struct):
    """A friend request; ``from`` asked ``to``."""

    id: int
    from_: UserView = msgspec.field(name="from")
    to: UserView
    status: str
    created_at: str


def user_view(user: UserRecord, online: bool) -> UserView:
    """Describe a user record with its online state."""
    return UserView(user.id, user.username, user.nickname, online)


def message_view(message: MessageRecord) -> MessageView:
    """Describe a stored message."""
    return MessageView(
        id=message.id,
        sender=SenderView(
            message.sender_id, message.sender_username, message.sender_nickname
        ),
        to_user=message.to_user_id,
        group_id=message.group_id,
        content=message.content,
        sent_at=iso_time(message.sent_at),
        client_msg_id=message.client_msg_id,
    )


def group_view(group: GroupRecord, members: list[UserView]) -> GroupView:
    """Describe a group with already described members."""
    return GroupView(
        group.id, group.name, group.owner_id, iso_time(group.created_at), members
    )


def request_view(
    request: FriendRequestRecord, sender: UserView, addressee: UserView
) -> FriendRequestView:
    """Describe a friend request with its two users already described."""
    return FriendRequestView(
        id=request.id,
        from_=sender,
        to=addressee,
        status=request.status,
        created_at=iso_time(request.created_at),
    )
