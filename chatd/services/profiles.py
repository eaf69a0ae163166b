"""Profiles: a user's nickname, and telling friends when it changes."""

from chatd import wire
from chatd.config import SecurityConfig
from chatd.services.hub import Hub
from chatd.services.presence import PresenceService
from chatd.services.text import check_name
from chatd.storage.records import UserRecord
from chatd.storage.store import Store
from chatd.views import user_view


class ProfilesService:
    """Change nicknames and push the change.

    Args:
        store: Where accounts live.
        hub: The online registry.
        presence: Keeps the online list's profiles current.
        config: The [security] section (nickname limit).
    """

    def __init__(
        self, store: Store, hub: Hub, presence: PresenceService, config: SecurityConfig
    ):
        self._store = store
        self._hub = hub
        self._presence = presence
        self._config = config

    async def update_nickname(
        self, user: UserRecord, nickname: str, session=None
    ) -> UserRecord:
        """Set a nickname; the user's other sessions and online friends get
        ``profile_updated``.

        Raises:
            ChatError: bad_request or too_large for the nickname.
        """
        nickname = check_name(nickname, "nickname", self._config.nickname_max_length)
        updated = await self._store.set_nickname(user.id, nickname)
        self._presence.profile_changed(updated)

        view = user_view(updated, True)
        payload = wire.event("profile_updated", {"user": view})
        friends = [f.id for f in await self._store.friends_of(user.id)]
        self._hub.deliver([user.id, *friends], payload, exclude=session)
        return updated
