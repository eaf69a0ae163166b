"""SQL pieces the store's modules share: column lists, row readers,
placeholders and conversation keys."""

from chatd.storage.records import FriendRequestRecord, MessageRecord, UserRecord

USER = "u.id, u.username, u.nickname, u.password_hash, u.created_at, u.delivered_up_to"
MESSAGE = (
    "m.id, m.sender_id, u.username, u.nickname, m.to_user_id, m.group_id,"
    " m.content, m.sent_at, m.client_msg_id"
)
MESSAGE_FROM = f"SELECT {MESSAGE} FROM messages m JOIN users u ON u.id = m.sender_id"
REQUEST = "id, from_id, to_id, status, created_at"
GROUP = "g.id, g.name, g.owner_id, g.created_at"


def user_row(row: tuple) -> UserRecord:
    """Build a user record from a row of ``USER``."""
    return UserRecord(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])


def message_row(row: tuple) -> MessageRecord:
    """Build a message record from a row of ``MESSAGE``."""
    return MessageRecord(*row)


def request_row(row: tuple) -> FriendRequestRecord:
    """Build a friend request record from a row of ``REQUEST``."""
    return FriendRequestRecord(*row)


def marks(count: int, width: int = 1) -> str:
    """Placeholders for ``count`` values, or rows of ``width`` values."""
    if width == 1:
        return ", ".join("?" * count)
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def private_conversation(a: int, b: int) -> str:
    """The conversation key of the private chat between two users."""
    return f"p:{min(a, b)}:{max(a, b)}"


def group_conversation(group_id: int) -> str:
    """The conversation key of a group chat."""
    return f"g:{group_id}"
