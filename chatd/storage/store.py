"""The store: every read and write chatd makes, in domain terms.

Each public method runs one transaction script (see ``database.py``) on
either backend. The store holds the SQL and no rules: where a rule must be
checked atomically with a write (a message only between friends, a friend
request answered once), the script reports an outcome and the service
decides what it means for the client.
"""

from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from chatd.storage.database import Database, Script, Statement
from chatd.storage.records import (
    FriendRequestRecord,
    GroupRecord,
    MessageRecord,
    NewMessage,
    UserRecord,
    WriteResult,
)
from chatd.storage.schema import load_migrations, migrate
from chatd.storage.sql import (
    GROUP,
    MESSAGE_FROM,
    REQUEST,
    USER,
    marks,
    message_row,
    request_row,
    user_row,
)
from chatd.storage.writes import write_in_one_statement, write_script

_MAX_ID = 2**63 - 1


class Store:
    """chatd's persistent state, on a ``Database`` backend.

    Args:
        database: The backend (``SqliteDatabase`` or ``PostgresDatabase``).
    """

    _log = Logger()

    def __init__(self, database: Database):
        self._db = database
        self.dialect = database.dialect

    async def start(self, now: int) -> None:
        """Connect and bring the schema up to date."""
        await self._db.start()
        migrations = load_migrations(self.dialect)
        before, applied = await self._db.run(
            "migrate", migrate, self.dialect, migrations, now
        )
        if applied:
            self._log.info(
                "Schema upgraded from version {before} to {after}",
                before=before,
                after=applied[-1],
            )

    async def close(self) -> None:
        """Release the backend's connections."""
        await self._db.close()

    async def ping(self) -> bool:
        """Answer whether the database answers a trivial query."""
        return await self._db.run("ping", self._ping) == 1

    @staticmethod
    def _ping() -> Script:
        rows = yield Statement("SELECT 1")
        return rows[0][0]

    def _lock_users(self, ids: Iterable[int]) -> Script:
        """Statements that serialise transactions touching these users.

        SQLite runs one transaction at a time already; PostgreSQL locks the
        user rows in id order, so two crossing friend requests cannot both
        be created.
        """
        if self.dialect == "postgres":
            ids = sorted(set(ids))
            sql = f"SELECT id FROM users WHERE id IN ({marks(len(ids))}) ORDER BY id"
            yield Statement(sql + " FOR UPDATE", ids)

    # Users

    async def create_user(
        self,
        username: str,
        username_key: str,
        nickname: str,
        password_hash: bytes,
        now: int,
    ) -> UserRecord | None:
        """Create an account; None when the username key is taken."""
        return await self._db.run(
            "create_user",
            self._create_user,
            username,
            username_key,
            nickname,
            password_hash,
            now,
        )

    @staticmethod
    def _create_user(username, username_key, nickname, password_hash, now) -> Script:
        rows = yield Statement(
            """
            INSERT INTO users (username, username_key, nickname, password_hash,
                               created_at)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (username_key) DO NOTHING
            RETURNING id, username, nickname, password_hash, created_at,
                      delivered_up_to
            """,
            (username, username_key, nickname, password_hash, now),
        )
        return user_row(rows[0]) if rows else None

    async def user_by_key(self, username_key: str) -> UserRecord | None:
        """Find an account by its normalised username."""
        return await self._db.run("user_by_key", self._user_by_key, username_key)

    @staticmethod
    def _user_by_key(username_key: str) -> Script:
        rows = yield Statement(
            f"SELECT {USER} FROM users u WHERE u.username_key = ?", (username_key,)
        )
        return user_row(rows[0]) if rows else None

    async def users_by_ids(self, ids: Iterable[int]) -> dict[int, UserRecord]:
        """Find accounts by id; missing ids are left out."""
        ids = sorted(set(ids))
        if not ids:
            return {}
        return await self._db.run("users_by_ids", self._users_by_ids, ids)

    @staticmethod
    def _users_by_ids(ids: list[int]) -> Script:
        rows = yield Statement(
            f"SELECT {USER} FROM users u WHERE u.id IN ({marks(len(ids))})", ids
        )
        return {row[0]: user_row(row) for row in rows}

    async def user_by_id(self, user_id: int) -> UserRecord | None:
        """Find an account by id."""
        return (await self.users_by_ids([user_id])).get(user_id)

    async def set_nickname(self, user_id: int, nickname: str) -> UserRecord:
        """Change a nickname and return the updated account."""
        return await self._db.run("set_nickname", self._set_nickname, user_id, nickname)

    @staticmethod
    def _set_nickname(user_id: int, nickname: str) -> Script:
        yield Statement(
            "UPDATE users SET nickname = ? WHERE id = ?", (nickname, user_id)
        )
        rows = yield Statement(f"SELECT {USER} FROM users u WHERE u.id = ?", (user_id,))
        return user_row(rows[0])

    async def set_password(
        self, user_id: int, password_hash: bytes, keep_session: bytes | None
    ) -> None:
        """Store a new password hash and revoke every other session."""
        await self._db.run(
            "set_password", self._set_password, user_id, password_hash, keep_session
        )

    @staticmethod
    def _set_password(user_id, password_hash, keep_session) -> Script:
        yield Statement(
            "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
        )
        yield Statement(
            "DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?",
            (user_id, keep_session or b""),
        )

    async def advance_cursor(self, user_id: int, up_to: int) -> int:
        """Move the delivery cursor forward (never back, never past the last
        message) and return where it stands."""
        return await self._db.run(
            "advance_cursor", self._advance_cursor, user_id, up_to
        )

    @staticmethod
    def _advance_cursor(user_id: int, up_to: int) -> Script:
        rows = yield Statement("SELECT COALESCE(MAX(id), 0) FROM messages")
        target = min(up_to, rows[0][0])
        rows = yield Statement(
            """
            UPDATE users
            SET delivered_up_to = CASE WHEN delivered_up_to < ? THEN ?
                                       ELSE delivered_up_to END
            WHERE id = ?
            RETURNING delivered_up_to
            """,
            (target, target, user_id),
        )
        return rows[0][0]

    # Sessions

    async def create_session(
        self, token_hash: bytes, user_id: int, now: int, expires_at: int
    ) -> None:
        """Record a session token (by its hash) and drop the user's expired ones."""
        await self._db.run(
            "create_session",
            self._create_session,
            token_hash,
            user_id,
            now,
            expires_at,
        )

    @staticmethod
    def _create_session(token_hash, user_id, now, expires_at) -> Script:
        yield Statement(
            "DELETE FROM sessions WHERE user_id = ? AND expires_at <= ?",
            (user_id, now),
        )
        yield Statement(
            """
            INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
            VALUES (?, ?, ?, ?)
            """,
            (token_hash, user_id, now, expires_at),
        )

    async def user_for_session(self, token_hash: bytes, now: int) -> UserRecord | None:
        """Find the account of a session token that has not expired."""
        return await self._db.run(
            "user_for_session", self._user_for_session, token_hash, now
        )

    @staticmethod
    def _user_for_session(token_hash: bytes, now: int) -> Script:
        rows = yield Statement(
            f"""
            SELECT {USER} FROM sessions s JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = ? AND s.expires_at > ?
            """,
            (token_hash, now),
        )
        return user_row(rows[0]) if rows else None

    async def delete_session(self, token_hash: bytes) -> None:
        """Revoke a session token."""
        await self._db.run("delete_session", self._delete_session, token_hash)

    @staticmethod
    def _delete_session(token_hash: bytes) -> Script:
        yield Statement("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    # Friends

    async def friends_of(self, user_id: int) -> list[UserRecord]:
        """List a user's friends, by id."""
        return await self._db.run("friends_of", self._friends_of, user_id)

    @staticmethod
    def _friends_of(user_id: int) -> Script:
        rows = yield Statement(
            f"""
            SELECT {USER} FROM friendships f JOIN users u ON u.id = f.friend_id
            WHERE f.user_id = ? ORDER BY u.id
            """,
            (user_id,),
        )
        return [user_row(row) for row in rows]

    async def are_friends(self, a: int, b: int) -> bool:
        """Answer whether two users are friends."""
        return await self._db.run("are_friends", self._are_friends, a, b)

    @staticmethod
    def _are_friends(a: int, b: int) -> Script:
        rows = yield Statement(
            "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?", (a, b)
        )
        return bool(rows)

    async def open_friend_request(
        self, from_id: int, to_id: int, now: int
    ) -> tuple[str, FriendRequestRecord | None]:
        """Ask ``to_id`` for friendship on behalf of ``from_id``.

        Returns:
            ``("already_friends", None)``; ``("exists", request)`` for a
            pending request already made; ``("accepted", request)`` when
            ``to_id`` had asked first, which this accepts; or
            ``("created", request)``.
        """
        return await self._db.run(
            "open_friend_request", self._open_friend_request, from_id, to_id, now
        )

    def _open_friend_request(self, from_id: int, to_id: int, now: int) -> Script:
        yield from self._lock_users([from_id, to_id])

        rows = yield Statement(
            "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?",
            (from_id, to_id),
        )
        if rows:
            return "already_friends", None

        rows = yield Statement(
            f"""
            SELECT {REQUEST} FROM friend_requests
            WHERE status = 'pending'
              AND ((from_id = ? AND to_id = ?) OR (from_id = ? AND to_id = ?))
            ORDER BY id
            """,
            (from_id, to_id, to_id, from_id),
        )
        requests = [request_row(row) for row in rows]
        for request in requests:
            if request.from_id == from_id:
                return "exists", request
        if requests:
            theirs = requests[0]
            yield from self._settle_request(theirs, True, now)
            return "accepted", _with_status(theirs, "accepted")

        rows = yield Statement(
            f"""
            INSERT INTO friend_requests (from_id, to_id, status, created_at)
            VALUES (?, ?, 'pending', ?)
            RETURNING {REQUEST}
            """,
            (from_id, to_id, now),
        )
        return "created", request_row(rows[0])

    @staticmethod
    def _settle_request(request: FriendRequestRecord, accept: bool, now: int):
        """Statements that answer a request and, on accept, make friends."""
        status = "accepted" if accept else "rejected"
        yield Statement(
            "UPDATE friend_requests SET status = ?, answered_at = ? WHERE id = ?",
            (status, now, request.id),
        )
        if accept:
            a, b = request.from_id, request.to_id
            yield Statement(
                """
                INSERT INTO friendships (user_id, friend_id, created_at)
                VALUES (?, ?, ?), (?, ?, ?)
                ON CONFLICT (user_id, friend_id) DO NOTHING
                """,
                (a, b, now, b, a, now),
            )

    async def answer_friend_request(
        self, request_id: int, user_id: int, accept: bool, now: int
    ) -> tuple[str, FriendRequestRecord | None]:
        """Answer a friend request as ``user_id``.

        Returns:
            ``("not_found", None)`` when there is no such request between
            this user and another; ``("forbidden", request)`` when the user
            made it rather than received it; ``("answered", request)`` when
            it was answered before; else ``("ok", request)`` with its new
            status.
        """
        return await self._db.run(
            "answer_friend_request",
            self._answer_friend_request,
            request_id,
            user_id,
            accept,
            now,
        )

    def _answer_friend_request(self, request_id, user_id, accept, now) -> Script:
        rows = yield Statement(
            f"SELECT {REQUEST} FROM friend_requests WHERE id = ?", (request_id,)
        )
        if not rows:
            return "not_found", None
        request = request_row(rows[0])
        if user_id not in (request.from_id, request.to_id):
            return "not_found", None
        if request.to_id != user_id:
            return "forbidden", request

        yield from self._lock_users([request.from_id, request.to_id])
        rows = yield Statement(
            f"SELECT {REQUEST} FROM friend_requests WHERE id = ?", (request_id,)
        )
        request = request_row(rows[0])
        if request.status != "pending":
            return "answered", request

        yield from self._settle_request(request, accept, now)
        return "ok", _with_status(request, "accepted" if accept else "rejected")

    async def pending_requests(
        self, user_id: int
    ) -> tuple[list[FriendRequestRecord], list[FriendRequestRecord]]:
        """List pending requests to and from a user, oldest first."""
        return await self._db.run("pending_requests", self._pending_requests, user_id)

    @staticmethod
    def _pending_requests(user_id: int) -> Script:
        rows = yield Statement(
            f"""
            SELECT {REQUEST} FROM friend_requests
            WHERE status = 'pending' AND (to_id = ? OR from_id = ?)
            ORDER BY id
            """,
            (user_id, user_id),
        )
        requests = [request_row(row) for row in rows]
        incoming = [r for r in requests if r.to_id == user_id]
        outgoing = [r for r in requests if r.from_id == user_id]
        return incoming, outgoing

    async def remove_friendship(self, a: int, b: int) -> bool:
        """End a friendship; False when there was none."""
        return await self._db.run("remove_friendship", self._remove_friendship, a, b)

    @staticmethod
    def _remove_friendship(a: int, b: int) -> Script:
        rows = yield Statement(
            """
            DELETE FROM friendships
            WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)
            RETURNING user_id
            """,
            (a, b, b, a),
        )
        return bool(rows)

    # Groups

    async def create_group(
        self, name: str, owner_id: int, member_ids: list[int], now: int
    ) -> GroupRecord:
        """Create a group of the owner and the given members."""
        return await self._db.run(
            "create_group", self._create_group, name, owner_id, member_ids, now
        )

    @staticmethod
    def _create_group(name, owner_id, member_ids, now) -> Script:
        rows = yield Statement("SELECT COALESCE(MAX(id), 0) FROM messages")
        joined_after = rows[0][0]
        rows = yield Statement(
            """
            INSERT INTO chat_groups (name, owner_id, created_at) VALUES (?, ?, ?)
            RETURNING id, name, owner_id, created_at
            """,
            (name, owner_id, now),
        )
        group = GroupRecord(*rows[0])

        members = sorted({owner_id, *member_ids})
        params: list[Any] = []
        for user_id in members:
            params += [group.id, user_id, now, joined_after]
        yield Statement(
            f"""
            INSERT INTO group_members (group_id, user_id, joined_at, joined_after_id)
            VALUES {marks(len(members), 4)}
            """,
            params,
        )
        return group

    async def group_by_id(self, group_id: int) -> GroupRecord | None:
        """Find a group."""
        return await self._db.run("group_by_id", self._group_by_id, group_id)

    @staticmethod
    def _group_by_id(group_id: int) -> Script:
        rows = yield Statement(
            f"SELECT {GROUP} FROM chat_groups g WHERE g.id = ?", (group_id,)
        )
        return GroupRecord(*rows[0]) if rows else None

    async def groups_of(
        self, user_id: int
    ) -> list[tuple[GroupRecord, list[UserRecord]]]:
        """List a user's groups with their members, by group id."""
        return await self._db.run("groups_of", self._groups_of, user_id)

    @staticmethod
    def _groups_of(user_id: int) -> Script:
        rows = yield Statement(
            f"""
            SELECT {GROUP} FROM chat_groups g
            JOIN group_members gm ON gm.group_id = g.id
            WHERE gm.user_id = ? ORDER BY g.id
            """,
            (user_id,),
        )
        groups = [GroupRecord(*row) for row in rows]
        if not groups:
            return []

        rows = yield Statement(
            f"""
            SELECT gm.group_id, {USER} FROM group_members gm
            JOIN users u ON u.id = gm.user_id
            WHERE gm.group_id IN (SELECT group_id FROM group_members WHERE user_id = ?)
            ORDER BY gm.group_id, u.id
            """,
            (user_id,),
        )
        members: dict[int, list[UserRecord]] = {group.id: [] for group in groups}
        for row in rows:
            members[row[0]].append(user_row(row[1:]))
        return [(group, members[group.id]) for group in groups]

    async def group_members(self, group_id: int) -> list[UserRecord]:
        """List a group's members, by id."""
        return await self._db.run("group_members", self._group_members, group_id)

    @staticmethod
    def _group_members(group_id: int) -> Script:
        rows = yield Statement(
            f"""
            SELECT {USER} FROM group_members gm JOIN users u ON u.id = gm.user_id
            WHERE gm.group_id = ? ORDER BY u.id
            """,
            (group_id,),
        )
        return [user_row(row) for row in rows]

    async def is_member(self, group_id: int, user_id: int) -> bool:
        """Answer whether a user belongs to a group."""
        return await self._db.run("is_member", self._is_member, group_id, user_id)

    @staticmethod
    def _is_member(group_id: int, user_id: int) -> Script:
        rows = yield Statement(
            "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
            (group_id, user_id),
        )
        return bool(rows)

    async def remove_member(self, group_id: int, user_id: int) -> bool:
        """Take a user out of a group; False when they were not in it."""
        return await self._db.run(
            "remove_member", self._remove_member, group_id, user_id
        )

    @staticmethod
    def _remove_member(group_id: int, user_id: int) -> Script:
        rows = yield Statement(
            """
            DELETE FROM group_members WHERE group_id = ? AND user_id = ?
            RETURNING user_id
            """,
            (group_id, user_id),
        )
        return bool(rows)

    # Messages

    async def write_messages(self, batch: list[NewMessage]) -> list[WriteResult]:
        """Store a batch of messages in one transaction, in order.

        A private message is stored only between friends and a group message
        only from a member, checked in the same transaction; a message whose
        ``client_msg_id`` its sender used before is not stored again.
        """
        if self.dialect == "postgres":
            return await write_in_one_statement(self._db, batch)
        return await self._db.run("write_messages", write_script, batch)

    async def history(
        self, conversation: str, before_id: int | None, limit: int
    ) -> list[MessageRecord]:
        """Read up to ``limit`` messages of a conversation below ``before_id``,
        newest first."""
        return await self._db.run(
            "history", self._history, conversation, before_id or _MAX_ID, limit
        )

    @staticmethod
    def _history(conversation: str, before_id: int, limit: int) -> Script:
        rows = yield Statement(
            f"""
            {MESSAGE_FROM}
            WHERE m.conversation = ? AND m.id < ?
            ORDER BY m.id DESC LIMIT ?
            """,
            (conversation, before_id, limit),
        )
        return [message_row(row) for row in rows]

    async def backlog(
        self, user_id: int, after_id: int, up_to: int, limit: int
    ) -> list[MessageRecord]:
        """Read the messages addressed to a user with ids in (after_id, up_to],
        oldest first: private ones to them and, since they joined, those of
        their groups that others sent."""
        return await self._db.run(
            "backlog", self._backlog, user_id, after_id, up_to, limit
        )

    @staticmethod
    def _backlog(user_id: int, after_id: int, up_to: int, limit: int) -> Script:
        private = yield Statement(
            f"""
            {MESSAGE_FROM}
            WHERE m.to_user_id = ? AND m.id > ? AND m.id <= ?
            ORDER BY m.id LIMIT ?
            """,
            (user_id, after_id, up_to, limit),
        )
        grouped = yield Statement(
            f"""
            {MESSAGE_FROM}
            JOIN group_members gm ON gm.group_id = m.group_id AND gm.user_id = ?
            WHERE m.id > ? AND m.id <= ? AND m.id > gm.joined_after_id
              AND m.sender_id <> ?
            ORDER BY m.id LIMIT ?
            """,
            (user_id, after_id, up_to, user_id, limit),
        )
        rows = sorted(private + grouped)[:limit]
        return [message_row(row) for row in rows]

    async def last_message_id(self) -> int:
        """Return the highest message id committed so far (0 for none)."""
        return await self._db.run("last_message_id", self._last_message_id)

    @staticmethod
    def _last_message_id() -> Script:
        rows = yield Statement("SELECT COALESCE(MAX(id), 0) FROM messages")
        return rows[0][0]


def _with_status(request: FriendRequestRecord, status: str) -> FriendRequestRecord:
    """A copy of a request record with another status."""
    return FriendRequestRecord(
        request.id, request.from_id, request.to_id, status, request.created_at
    )
