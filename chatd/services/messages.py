"""Messages: sending, history, the offline backlog and its acknowledgement.

A message is committed before anyone hears of it: the sender's reply and the
recipients' events are built from the stored row. Every message addressed to
a user with an id above their delivery cursor is backlog until they ack it.
"""

from chatd import wire
from chatd.clock import now_ms
from chatd.config import MessagesConfig, SecurityConfig
from chatd.errors import ChatError, ErrorCode, bad_request
from chatd.services.hub import Hub
from chatd.services.text import check_content
from chatd.storage.records import MessageRecord, NewMessage, UserRecord
from chatd.storage.sql import group_conversation, private_conversation
from chatd.storage.store import Store
from chatd.storage.writer import MessageWriter
from chatd.views import MessageView, message_view


class MessagesService:
    """Send messages, read history, hand out and settle the backlog.

    Args:
        store: Where messages live.
        writer: The single writer that commits messages in batches.
        hub: The online registry, for live delivery.
        clock: The reactor's clock.
        security: The [security] section (content limit).
        config: The [messages] section (batch and page sizes).
    """

    def __init__(
        self,
        store: Store,
        writer: MessageWriter,
        hub: Hub,
        clock,
        security: SecurityConfig,
        config: MessagesConfig,
    ):
        self._store = store
        self._writer = writer
        self._hub = hub
        self._clock = clock
        self._security = security
        self._config = config

    async def send(
        self,
        user: UserRecord,
        to_user: int | None,
        group_id: int | None,
        content: str,
        client_msg_id: str | None,
        session=None,
    ) -> MessageView:
        """Store a message and deliver it to the sessions that are online.

        ``session`` is the sending connection, which gets the reply rather
        than an event.

        Raises:
            ChatError: bad_request or too_large for the content or target;
                not_friends, not_member or not_found for the target.
        """
        if (to_user is None) == (group_id is None):
            raise bad_request("to_user", "give exactly one of to_user and group_id")
        check_content(content, self._security.content_max_length)

        new = NewMessage(
            user.id, to_user, group_id, content, now_ms(self._clock), client_msg_id
        )
        result = await self._writer.write(new)
        if result.outcome == "not_friends":
            if await self._store.user_by_id(to_user) is None:
                raise ChatError(ErrorCode.NOT_FOUND, "no such user", field="to_user")
            raise ChatError(ErrorCode.NOT_FRIENDS, "you are not friends")
        if result.outcome == "not_member":
            if await self._store.group_by_id(group_id) is None:
                raise ChatError(ErrorCode.NOT_FOUND, "no such group", field="group_id")
            raise ChatError(ErrorCode.NOT_MEMBER, "you are not in that group")

        view = message_view(result.message)
        if result.outcome == "created":
            incoming = wire.event("message", {"message": view, "direction": "in"})
            self._hub.deliver(result.recipients, incoming)
            outgoing = wire.event("message", {"message": view, "direction": "out"})
            self._hub.deliver([user.id], outgoing, exclude=session)
        return view

    async def history(
        self,
        user: UserRecord,
        with_user: int | None,
        group_id: int | None,
        before_id: int | None,
        limit: int | None,
    ) -> dict:
        """A page of a conversation, oldest to newest, below ``before_id``.

        Raises:
            ChatError: not_found, not_friends or not_member.
        """
        if (with_user is None) == (group_id is None):
            raise bad_request("with_user", "give exactly one of with_user and group_id")
        limit = min(limit or self._config.history_limit, self._config.history_max_limit)

        if with_user is not None:
            if await self._store.user_by_id(with_user) is None:
                raise ChatError(ErrorCode.NOT_FOUND, "no such user", field="with_user")
            if not await self._store.are_friends(user.id, with_user):
                raise ChatError(ErrorCode.NOT_FRIENDS, "you are not friends")
            conversation = private_conversation(user.id, with_user)
        else:
            if await self._store.group_by_id(group_id) is None:
                raise ChatError(ErrorCode.NOT_FOUND, "no such group", field="group_id")
            if not await self._store.is_member(group_id, user.id):
                raise ChatError(ErrorCode.NOT_MEMBER, "you are not in that group")
            conversation = group_conversation(group_id)

        rows = await self._store.history(conversation, before_id, limit + 1)
        page = rows[:limit]
        page.reverse()
        return {"messages": _views(page), "has_more": len(rows) > limit}

    async def backlog(
        self, user_id: int, after_id: int, up_to: int
    ) -> tuple[list[MessageView], bool]:
        """The next batch of backlog after ``after_id`` (up to ``up_to``),
        oldest first, and whether more follows."""
        batch = self._config.backlog_batch
        rows = await self._store.backlog(user_id, after_id, up_to, batch + 1)
        return _views(rows[:batch]), len(rows) > batch

    async def last_message_id(self) -> int:
        """The newest committed message id: where a login's backlog ends."""
        return await self._store.last_message_id()

    async def ack(self, user: UserRecord, up_to: int) -> int:
        """Move the user's delivery cursor to ``up_to`` (never back)."""
        return await self._store.advance_cursor(user.id, up_to)


def _views(rows: list[MessageRecord]) -> list[MessageView]:
    return [message_view(row) for row in rows]
