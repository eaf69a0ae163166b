"""Friends: requests sent, accepted and rejected; the friend list.

Friendship is mutual and is what allows private messages. A request to
someone who already asked you accepts theirs.
"""

from chatd import wire
from chatd.clock import now_ms
from chatd.errors import ChatError, ErrorCode, bad_request
from chatd.services.hub import Hub
from chatd.services.presence import PresenceService
from chatd.services.text import username_key
from chatd.storage.records import FriendRequestRecord, UserRecord
from chatd.storage.store import Store
from chatd.views import FriendRequestView, UserView, request_view, user_view


class FriendsService:
    """Friend requests and friendships.

    Args:
        store: Where requests and friendships live.
        hub: The online registry, for events and online flags.
        presence: Told of every friendship made or ended.
        clock: The reactor's clock.
    """

    def __init__(self, store: Store, hub: Hub, presence: PresenceService, clock):
        self._store = store
        self._hub = hub
        self._presence = presence
        self._clock = clock

    def describe(self, user: UserRecord) -> UserView:
        """A user with their current online state."""
        return user_view(user, self._hub.is_online(user.id))

    async def _describe_requests(
        self, requests: list[FriendRequestRecord]
    ) -> list[FriendRequestView]:
        ids = {r.from_id for r in requests} | {r.to_id for r in requests}
        users = await self._store.users_by_ids(ids)
        return [
            request_view(
                r, self.describe(users[r.from_id]), self.describe(users[r.to_id])
            )
            for r in requests
        ]

    async def send_request(self, user: UserRecord, username: str) -> FriendRequestView:
        """Ask the user called ``username`` to be friends.

        Raises:
            ChatError: not_found for no such user; bad_request for oneself
                or an existing friend.
        """
        target = None
        if 0 < len(username) <= 256:
            target = await self._store.user_by_key(username_key(username))
        if target is None:
            raise ChatError(ErrorCode.NOT_FOUND, "no such user", field="username")
        if target.id == user.id:
            raise bad_request("username", "you cannot befriend yourself")

        outcome, request = await self._store.open_friend_request(
            user.id, target.id, now_ms(self._clock)
        )
        if outcome == "already_friends":
            raise bad_request("username", "you are friends already")

        (view,) = await self._describe_requests([request])
        if outcome == "created":
            self._hub.deliver(
                [target.id], wire.event("friend_request", {"request": view})
            )
        elif outcome == "accepted":
            self._befriended(view, target, user)
        return view

    async def respond(
        self, user: UserRecord, request_id: int, accept: bool
    ) -> FriendRequestView:
        """Accept or reject a request addressed to ``user``.

        Raises:
            ChatError: not_found, forbidden (not the addressee), or
                bad_request when it was answered already.
        """
        outcome, request = await self._store.answer_friend_request(
            request_id, user.id, accept, now_ms(self._clock)
        )
        if outcome == "not_found":
            raise ChatError(ErrorCode.NOT_FOUND, "no such friend request")
        if outcome == "forbidden":
            raise ChatError(
                ErrorCode.FORBIDDEN, "only the addressee may answer a request"
            )
        if outcome == "answered":
            raise bad_request("request_id", "that request was answered already")

        (view,) = await self._describe_requests([request])
        requester = await self._store.user_by_id(request.from_id)
        if accept:
            self._befriended(view, requester, user)
        else:
            self._hub.deliver(
                [request.from_id],
                wire.event("friend_request_answered", {"request": view}),
            )
        return view

    def _befriended(
        self, view: FriendRequestView, requester: UserRecord, addressee: UserRecord
    ) -> None:
        """Tell both sides of an accepted request."""
        self._presence.friendship_changed(requester.id, addressee.id, True)
        self._hub.deliver(
            [requester.id], wire.event("friend_request_answered", {"request": view})
        )
        self._hub.deliver(
            [requester.id],
            wire.event("friend_added", {"friend": self.describe(addressee)}),
        )
        self._hub.deliver(
            [addressee.id],
            wire.event("friend_added", {"friend": self.describe(requester)}),
        )

    async def pending(self, user: UserRecord) -> dict:
        """The user's pending requests: ``incoming`` and ``outgoing``."""
        incoming, outgoing = await self._store.pending_requests(user.id)
        views = await self._describe_requests(incoming + outgoing)
        return {"incoming": views[: len(incoming)], "outgoing": views[len(incoming) :]}

    async def friends(self, user: UserRecord) -> list[UserView]:
        """The user's friends, with their online state."""
        return [
            self.describe(friend) for friend in await self._store.friends_of(user.id)
        ]

    async def remove(self, user: UserRecord, friend_id: int) -> None:
        """End a friendship.

        Raises:
            ChatError: not_friends when there was none.
        """
        if not await self._store.remove_friendship(user.id, friend_id):
            raise ChatError(ErrorCode.NOT_FRIENDS, "you are not friends")
        self._presence.friendship_changed(user.id, friend_id, False)
        self._hub.deliver(
            [friend_id], wire.event("friend_removed", {"user_id": user.id})
        )
        self._hub.deliver(
            [user.id], wire.event("friend_removed", {"user_id": friend_id})
        )
