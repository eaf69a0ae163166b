"""Requests to handlers: check login, call a service, build a reply.

The connection (chatd.server.protocol) decodes frames and refuses the ones
that cannot be decoded; the router gets decoded requests.

This is the one place where exceptions become error replies: a ``ChatError``
is answered with its code; a lost database with ``unavailable``; anything
else is logged with its traceback and answered ``internal_error`` with
nothing internal in it. It also runs what belongs to a session rather than
to one service: the login sequence, the backlog batches and logout.
"""

from dataclasses import dataclass

from twisted.logger import Logger

from chatd import wire
from chatd.config import Config
from chatd.errors import ChatError, ErrorCode
from chatd.server.protocol import CLOSE_PASSWORD_CHANGED, CLOSE_SESSION_LIMIT
from chatd.server.registry import Registry
from chatd.services.auth import AuthService
from chatd.services.friends import FriendsService
from chatd.services.groups import GroupsService
from chatd.services.messages import MessagesService
from chatd.services.presence import PresenceService
from chatd.services.profiles import ProfilesService
from chatd.storage.database import DatabaseUnavailable
from chatd.storage.records import UserRecord
from chatd.views import user_view

_BEFORE_LOGIN = (wire.Register, wire.Login, wire.Resume, wire.Ping)


@dataclass
class Services:
    """Every service the router calls."""

    auth: AuthService
    friends: FriendsService
    groups: GroupsService
    messages: MessagesService
    presence: PresenceService
    profiles: ProfilesService


@dataclass
class BacklogCursor:
    """How far a session's backlog has been sent, and where it ends."""

    last_sent: int
    up_to: int
    more: bool


class Router:
    """Dispatch decoded requests to their handlers.

    Args:
        services: The services.
        registry: The online registry.
        config: The whole configuration.
    """

    _log = Logger()

    def __init__(self, services: Services, registry: Registry, config: Config):
        self._services = services
        self._registry = registry
        self._config = config
        self._handlers = {
            wire.Register: self._register,
            wire.Login: self._login,
            wire.Resume: self._resume,
            wire.Logout: self._logout,
            wire.ChangePassword: self._change_password,
            wire.SendMessage: self._send_message,
            wire.Ack: self._ack,
            wire.GetHistory: self._get_history,
            wire.CreateGroup: self._create_group,
            wire.GetGroups: self._get_groups,
            wire.GetGroupMembers: self._get_group_members,
            wire.LeaveGroup: self._leave_group,
            wire.SendFriendRequest: self._send_friend_request,
            wire.RespondFriendRequest: self._respond_friend_request,
            wire.GetPendingRequests: self._get_pending_requests,
            wire.GetFriends: self._get_friends,
            wire.RemoveFriend: self._remove_friend,
            wire.UpdateNickname: self._update_nickname,
            wire.GetOnlineUsers: self._get_online_users,
            wire.Ping: self._ping,
        }

    async def dispatch(self, connection, request: wire.Request) -> bytes:
        """Answer one decoded request with exactly one encoded reply."""
        action = wire.action_of(request)
        try:
            if connection.user is None and not isinstance(request, _BEFORE_LOGIN):
                raise ChatError(ErrorCode.NOT_AUTHENTICATED, "log in first")
            data = await self._handlers[type(request)](connection, request)
        except ChatError as error:
            return wire.reply_error(request.id, action, error)
        except DatabaseUnavailable as error:
            self._log.error(
                "Store unavailable during {action}: {error}",
                action=action,
                error=str(error),
            )
            unavailable = ChatError(
                ErrorCode.UNAVAILABLE, "the server cannot reach its database; retry"
            )
            return wire.reply_error(request.id, action, unavailable)
        except Exception:
            self._log.failure(
                "Unexpected error in {action} for {peer}",
                action=action,
                peer=connection.peer_address,
            )
            internal = ChatError(ErrorCode.INTERNAL_ERROR, "internal error")
            return wire.reply_error(request.id, action, internal)
        return wire.reply_ok(request.id, action, data)

    # Sessions

    def _require_anonymous(self, connection) -> None:
        if connection.user is not None:
            raise ChatError(ErrorCode.ALREADY_AUTHENTICATED, "already logged in")

    async def _register(self, connection, request: wire.Register) -> dict:
        self._require_anonymous(connection)
        auth = self._services.auth
        user, token = await auth.register(
            request.username, request.password, request.nickname
        )
        self._log.info(
            "User {user_id} registered from {peer}",
            user_id=user.id,
            peer=connection.peer_address,
        )
        return await self._begin_session(connection, user, token, "register")

    async def _login(self, connection, request: wire.Login) -> dict:
        self._require_anonymous(connection)
        try:
            user, token = await self._services.auth.login(
                request.username, request.password, connection.peer_address
            )
        except ChatError:
            self._log.info("Failed login from {peer}", peer=connection.peer_address)
            raise
        return await self._begin_session(connection, user, token, "login")

    async def _resume(self, connection, request: wire.Resume) -> dict:
        self._require_anonymous(connection)
        user, token = await self._services.auth.resume(request.session_token)
        return await self._begin_session(connection, user, token, "resume")

    async def _begin_session(
        self, connection, user: UserRecord, token: str, how: str
    ) -> dict:
        """Log the connection in and queue the events that follow a login:
        friends, groups, offline_messages and online_users, in that order."""
        services = self._services
        if not connection.still_open:
            # The client left while its password was being checked: no
            # session for a connection that is gone, and no token for it.
            if how != "resume":
                await services.auth.logout(token)
            raise ChatError(ErrorCode.UNAVAILABLE, "the connection closed")
        connection.user, connection.token = user, token
        connection.authenticated()
        first = self._registry.add(user.id, connection)
        try:
            friends = await services.friends.friends(user)
            if connection.user is not user:
                # Closed meanwhile; connection_lost has ended the session.
                raise ChatError(ErrorCode.UNAVAILABLE, "the connection closed")
            if first:
                services.presence.came_online(user, [f.id for f in friends])
            groups = await services.groups.groups(user)
            up_to = await services.messages.last_message_id()
            backlog, more = await services.messages.backlog(
                user.id, user.delivered_up_to, up_to
            )
        except BaseException:
            self._end_session(connection)
            connection.token = None
            raise

        last_sent = backlog[-1].id if backlog else user.delivered_up_to
        connection.backlog = BacklogCursor(last_sent, up_to, more)
        connection.send_after_reply(wire.event("friends", {"friends": friends}))
        connection.send_after_reply(wire.event("groups", {"groups": groups}))
        connection.send_after_reply(
            wire.event("offline_messages", {"messages": backlog, "has_more": more})
        )
        snapshot = services.presence.snapshot(user.id)
        if snapshot is not None:
            connection.send_after_reply(wire.event("online_users", snapshot))

        self._enforce_session_limit(user.id)
        self._log.info(
            "User {user_id} logged in ({how}) from {peer}",
            user_id=user.id,
            how=how,
            peer=connection.peer_address,
        )
        return {"user": user_view(user, True), "session_token": token}

    def _enforce_session_limit(self, user_id: int) -> None:
        """Close the oldest sessions of a user past the configured limit."""
        sessions = self._registry.sessions_of(user_id)
        excess = len(sessions) - self._config.security.max_sessions_per_user
        for oldest in sessions[: max(excess, 0)]:
            self._end_session(oldest)
            oldest.close_with(
                CLOSE_SESSION_LIMIT, "too many sessions: the oldest one was closed"
            )

    def _end_session(self, connection) -> None:
        """Take a connection out of the registry; the user goes offline with
        their last session."""
        user = connection.user
        if user is None:
            return
        connection.user = None
        connection.backlog = None
        if self._registry.remove(user.id, connection):
            self._services.presence.went_offline(user.id)

    def connection_lost(self, connection) -> None:
        """End the session of a connection that closed."""
        user = connection.user
        self._end_session(connection)
        if user is not None:
            self._log.info(
                "User {user_id} disconnected from {peer}",
                user_id=user.id,
                peer=connection.peer_address,
            )

    async def _logout(self, connection, request: wire.Logout) -> dict:
        user = connection.user
        await self._services.auth.logout(connection.token)
        self._end_session(connection)
        connection.token = None
        self._log.info(
            "User {user_id} logged out from {peer}",
            user_id=user.id,
            peer=connection.peer_address,
        )
        return {}

    async def _change_password(self, connection, request: wire.ChangePassword) -> dict:
        user = connection.user
        await self._services.auth.change_password(
            user, request.old_password, request.new_password, connection.token
        )
        for other in self._registry.sessions_of(user.id):
            if other is not connection:
                self._end_session(other)
                other.close_with(CLOSE_PASSWORD_CHANGED, "the password was changed")
        self._log.info("User {user_id} changed their password", user_id=user.id)
        return {}

    # Messages

    async def _send_message(self, connection, request: wire.SendMessage) -> dict:
        message = await self._services.messages.send(
            connection.user,
            request.to_user,
            request.group_id,
            request.content,
            request.client_msg_id,
            session=connection,
        )
        return {"message": message}

    async def _ack(self, connection, request: wire.Ack) -> dict:
        messages = self._services.messages
        user = connection.user
        delivered = await messages.ack(user, request.up_to)

        cursor: BacklogCursor | None = connection.backlog
        if cursor is not None and cursor.more and request.up_to >= cursor.last_sent:
            batch, more = await messages.backlog(
                user.id, cursor.last_sent, cursor.up_to
            )
            if batch:
                cursor.last_sent = batch[-1].id
            cursor.more = more
            connection.send_after_reply(
                wire.event("offline_messages", {"messages": batch, "has_more": more})
            )
        return {"delivered_up_to": delivered}

    async def _get_history(self, connection, request: wire.GetHistory) -> dict:
        return await self._services.messages.history(
            connection.user,
            request.with_user,
            request.group_id,
            request.before_id,
            request.limit,
        )

    # Groups

    async def _create_group(self, connection, request: wire.CreateGroup) -> dict:
        group = await self._services.groups.create(
            connection.user, request.name, request.members
        )
        return {"group": group}

    async def _get_groups(self, connection, request: wire.GetGroups) -> dict:
        return {"groups": await self._services.groups.groups(connection.user)}

    async def _get_group_members(
        self, connection, request: wire.GetGroupMembers
    ) -> dict:
        members = await self._services.groups.members(connection.user, request.group_id)
        return {"members": members}

    async def _leave_group(self, connection, request: wire.LeaveGroup) -> dict:
        await self._services.groups.leave(connection.user, request.group_id)
        return {}

    # Friends

    async def _send_friend_request(
        self, connection, request: wire.SendFriendRequest
    ) -> dict:
        view = await self._services.friends.send_request(
            connection.user, request.username
        )
        return {"request": view}

    async def _respond_friend_request(
        self, connection, request: wire.RespondFriendRequest
    ) -> dict:
        view = await self._services.friends.respond(
            connection.user, request.request_id, request.accept
        )
        return {"request": view}

    async def _get_pending_requests(
        self, connection, request: wire.GetPendingRequests
    ) -> dict:
        return await self._services.friends.pending(connection.user)

    async def _get_friends(self, connection, request: wire.GetFriends) -> dict:
        return {"friends": await self._services.friends.friends(connection.user)}

    async def _remove_friend(self, connection, request: wire.RemoveFriend) -> dict:
        await self._services.friends.remove(connection.user, request.user_id)
        return {}

    # Profiles and presence

    async def _update_nickname(self, connection, request: wire.UpdateNickname) -> dict:
        updated = await self._services.profiles.update_nickname(
            connection.user, request.nickname, session=connection
        )
        for session in self._registry.sessions_of(updated.id):
            session.user = updated
        return {"user": user_view(updated, True)}

    async def _get_online_users(self, connection, request: wire.GetOnlineUsers) -> dict:
        users = self._services.presence.online_users(connection.user.id)
        return {"users": users}

    async def _ping(self, connection, request: wire.Ping) -> dict:
        return {}
