"""Presence: who is online, told to friends and to the online list.

A user is online from the opening of their first session to the closing of
their last one; a second device changes nothing. Friends get a ``presence``
event at each change. The online list is sent whole once, at login, capped
in size; after that each client gets at most one ``online_users_changed``
per interval with what changed in it, so a login storm costs each client
O(changes), not the whole list every time. A user is never both in
``added`` and in ``removed`` of one event.
"""

from collections.abc import Iterable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd import wire
from chatd.config import PresenceConfig
from chatd.errors import ChatError, ErrorCode
from chatd.services.hub import Hub
from chatd.storage.records import UserRecord
from chatd.views import UserView, user_view


class PresenceService:
    """Track online users and tell others when they come and go.

    Args:
        hub: The online registry.
        clock: The reactor, for the coalescing timer.
        config: The [presence] section.
    """

    _log = Logger()

    def __init__(self, hub: Hub, clock, config: PresenceConfig):
        self._hub = hub
        self._config = config
        self._profiles: dict[int, UserView] = {}
        self._friends: dict[int, set[int]] = {}
        self._added: dict[int, UserView] = {}
        self._removed: dict[int, set[int]] = {}
        self._ticker = LoopingCall(self.flush_changes)
        self._ticker.clock = clock

    @property
    def scope(self) -> str:
        """``all``, ``friends`` or ``off``."""
        return self._config.online_users

    def start(self) -> None:
        """Start the timer that sends ``online_users_changed``."""
        if self.scope != "off":
            self._ticker.start(
                self._config.online_users_interval, now=False
            ).addErrback(
                lambda failure: self._log.failure("Presence ticker failed", failure)
            )

    def stop(self) -> None:
        """Stop the timer."""
        if self._ticker.running:
            self._ticker.stop()

    def came_online(self, user: UserRecord, friend_ids: Iterable[int]) -> None:
        """Record a user's first session, and tell their online friends."""
        profile = user_view(user, True)
        self._profiles[user.id] = profile
        self._friends[user.id] = set(friend_ids)
        self._removed.pop(user.id, None)
        self._added[user.id] = profile
        self._tell_friends(user.id, True)

    def went_offline(self, user_id: int) -> None:
        """Record the end of a user's last session, and tell their friends."""
        self._tell_friends(user_id, False)
        self._profiles.pop(user_id, None)
        # Record the removal even when the arrival was never sent: clients
        # that logged in meanwhile have the user in their snapshot.
        self._added.pop(user_id, None)
        self._removed[user_id] = self._friends.pop(user_id, set())

    def _tell_friends(self, user_id: int, online: bool) -> None:
        friends = self._friends.get(user_id, ())
        if friends:
            payload = wire.event("presence", {"user_id": user_id, "online": online})
            self._hub.deliver(friends, payload)

    def friendship_changed(self, a: int, b: int, friends: bool) -> None:
        """Keep the friend sets of online users in step with the store."""
        for user, other in ((a, b), (b, a)):
            known = self._friends.get(user)
            if known is not None:
                if friends:
                    known.add(other)
                else:
                    known.discard(other)

    def profile_changed(self, user: UserRecord) -> None:
        """Keep the online list's copy of a user's profile current."""
        if user.id in self._profiles:
            self._profiles[user.id] = user_view(user, True)

    def friends_online(self, user_id: int) -> list[int]:
        """The online friends of an online user."""
        return [f for f in self._friends.get(user_id, ()) if self._hub.is_online(f)]

    def snapshot(self, user_id: int) -> dict | None:
        """The ``online_users`` event data for a user logging in; None when
        the online list is off."""
        if self.scope == "off":
            return None
        if self.scope == "friends":
            ids = sorted(self.friends_online(user_id))
        else:
            ids = list(self._profiles)
        limit = self._config.online_users_limit
        users = [self._profiles[i] for i in ids[:limit] if i in self._profiles]
        return {"users": users, "total": len(ids)}

    def online_users(self, user_id: int) -> list[UserView]:
        """The answer to ``get_online_users``, capped like the snapshot.

        Raises:
            ChatError: forbidden when the online list is off.
        """
        snapshot = self.snapshot(user_id)
        if snapshot is None:
            raise ChatError(ErrorCode.FORBIDDEN, "the online list is turned off")
        return snapshot["users"]

    def flush_changes(self) -> None:
        """Send what changed since the last tick, once to each client."""
        if not self._added and not self._removed:
            return
        added, removed = self._added, self._removed
        self._added, self._removed = {}, {}

        if self.scope == "all":
            payload = wire.event(
                "online_users_changed",
                {"added": list(added.values()), "removed": sorted(removed)},
            )
            self._hub.deliver_to_all(payload)
            return

        # Scope "friends": each online user hears only of their friends.
        per_user: dict[int, tuple[list, list]] = {}
        for changed, profile in added.items():
            for friend in self._friends.get(changed, ()):
                per_user.setdefault(friend, ([], []))[0].append(profile)
        for changed, friends in removed.items():
            for friend in friends:
                per_user.setdefault(friend, ([], []))[1].append(changed)
        for user_id, (user_added, user_removed) in per_user.items():
            if not self._hub.is_online(user_id):
                continue
            payload = wire.event(
                "online_users_changed",
                {"added": user_added, "removed": sorted(user_removed)},
            )
            self._hub.deliver([user_id], payload)
