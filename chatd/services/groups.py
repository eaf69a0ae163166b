"""Groups: created by a user with some of their friends; members chat."""

from chatd import wire
from chatd.clock import now_ms
from chatd.config import SecurityConfig
from chatd.errors import ChatError, ErrorCode
from chatd.services.hub import Hub
from chatd.services.text import check_name
from chatd.storage.records import GroupRecord, UserRecord
from chatd.storage.store import Store
from chatd.views import GroupView, UserView, group_view, user_view


class GroupsService:
    """Create groups, list them, list and change their members.

    Args:
        store: Where groups live.
        hub: The online registry, for events and online flags.
        clock: The reactor's clock.
        config: The [security] section (group limits).
    """

    def __init__(self, store: Store, hub: Hub, clock, config: SecurityConfig):
        self._store = store
        self._hub = hub
        self._clock = clock
        self._config = config

    def _describe(self, group: GroupRecord, members: list[UserRecord]) -> GroupView:
        views = [user_view(m, self._hub.is_online(m.id)) for m in members]
        return group_view(group, views)

    async def create(
        self, user: UserRecord, name: str, member_ids: list[int]
    ) -> GroupView:
        """Create a group of ``user`` and the given friends of theirs.

        Raises:
            ChatError: bad_request or too_large for the name or the member
                count; not_friends when a member is not a friend.
        """
        name = check_name(name, "name", self._config.group_name_max_length)
        others = sorted(set(member_ids) - {user.id})
        limit = self._config.max_group_members
        if len(others) + 1 > limit:
            raise ChatError(
                ErrorCode.TOO_LARGE,
                f"members: a group holds at most {limit} members",
                field="members",
            )

        friends = {f.id: f for f in await self._store.friends_of(user.id)}
        strangers = [i for i in others if i not in friends]
        if strangers:
            raise ChatError(
                ErrorCode.NOT_FRIENDS,
                f"members: user {strangers[0]} is not your friend",
                field="members",
            )

        group = await self._store.create_group(
            name, user.id, others, now_ms(self._clock)
        )
        members = sorted([user, *(friends[i] for i in others)], key=lambda u: u.id)
        view = self._describe(group, members)
        self._hub.deliver(
            [m.id for m in members], wire.event("group_added", {"group": view})
        )
        return view

    async def groups(self, user: UserRecord) -> list[GroupView]:
        """The user's groups with their members."""
        return [
            self._describe(group, members)
            for group, members in await self._store.groups_of(user.id)
        ]

    async def _require_member(self, user: UserRecord, group_id: int) -> GroupRecord:
        group = await self._store.group_by_id(group_id)
        if group is None:
            raise ChatError(ErrorCode.NOT_FOUND, "no such group", field="group_id")
        if not await self._store.is_member(group_id, user.id):
            raise ChatError(ErrorCode.NOT_MEMBER, "you are not in that group")
        return group

    async def members(self, user: UserRecord, group_id: int) -> list[UserView]:
        """The members of one of the user's groups.

        Raises:
            ChatError: not_found, or not_member.
        """
        await self._require_member(user, group_id)
        members = await self._store.group_members(group_id)
        return [user_view(m, self._hub.is_online(m.id)) for m in members]

    async def leave(self, user: UserRecord, group_id: int) -> None:
        """Take the user out of a group; its messages stop reaching them.

        Raises:
            ChatError: not_found, or not_member.
        """
        await self._require_member(user, group_id)
        if not await self._store.remove_member(group_id, user.id):
            raise ChatError(ErrorCode.NOT_MEMBER, "you are not in that group")
        remaining = [m.id for m in await self._store.group_members(group_id)]
        payload = wire.event(
            "group_member_left", {"group_id": group_id, "user_id": user.id}
        )
        self._hub.deliver([*remaining, user.id], payload)
