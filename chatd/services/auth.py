"""Accounts and sessions: register, login, resume, logout, change password.

A session token is 256 random bits, given to the client once and stored
only as its SHA-256 digest, with an expiry. Unknown usernames and wrong
passwords get the same answer, after the same bcrypt work. Password checks
are throttled per username and per peer address (chatd.services.throttle).
"""

import hashlib
import secrets

from chatd.clock import now_ms
from chatd.config import SecurityConfig
from chatd.errors import ChatError, ErrorCode
from chatd.passwords import PasswordHasher
from chatd.services.text import check_name, check_password, check_username, username_key
from chatd.services.throttle import LoginThrottle, Throttled, address_key
from chatd.storage.records import UserRecord
from chatd.storage.store import Store

_MAX_TOKEN_LENGTH = 128


def token_digest(token: str) -> bytes:
    """The form a session token is stored and looked up in."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class AuthService:
    """Create accounts and open and close sessions.

    Args:
        store: Where accounts and sessions live.
        hasher: bcrypt in a thread pool.
        clock: The reactor's clock.
        config: The [security] section.
    """

    def __init__(
        self, store: Store, hasher: PasswordHasher, clock, config: SecurityConfig
    ):
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._config = config
        self._throttle = LoginThrottle(
            clock,
            config.login_failures_allowed,
            config.login_delay,
            config.login_delay_max,
            config.login_failure_window,
        )

    async def _verify(
        self, keys: list[str], password: str, hashed: bytes | None
    ) -> bool:
        """Check a password under the login throttle's keys.

        Raises:
            ChatError: rate_limited while a key must wait, or while too many
                password checks are queued.
        """
        try:
            self._throttle.begin(keys)
        except Throttled as throttled:
            seconds = max(int(throttled.retry_after + 0.999), 1)
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                f"too many failed logins; retry in {seconds} s",
            ) from None
        try:
            ok = await self._hasher.check(password, hashed) and hashed is not None
        except BaseException:
            # No check was made (the queue was full, or it was cancelled).
            self._throttle.cancel(keys)
            raise
        self._throttle.end(keys, success=ok, reset=keys[0])
        return ok

    def _check_password(self, password: str, field: str = "password") -> None:
        config = self._config
        check_password(
            password, config.password_min_bytes, config.password_max_bytes, field
        )

    async def register(
        self, username: str, password: str, nickname: str | None
    ) -> tuple[UserRecord, str]:
        """Create an account and a session for it.

        Raises:
            ChatError: bad_request or too_large for a bad field, or
                username_taken.
        """
        config = self._config
        check_username(username, config.username_min_length, config.username_max_length)
        self._check_password(password)
        if nickname is None:
            nickname = username
        nickname = check_name(nickname, "nickname", config.nickname_max_length)

        key = username_key(username)
        if await self._store.user_by_key(key) is not None:
            raise ChatError(ErrorCode.USERNAME_TAKEN, "that username is taken")

        hashed = await self._hasher.hash(password)
        user = await self._store.create_user(
            username, key, nickname, hashed, now_ms(self._clock)
        )
        if user is None:
            raise ChatError(ErrorCode.USERNAME_TAKEN, "that username is taken")
        return user, await self._open_session(user)

    async def login(
        self, username: str, password: str, peer: str = "?"
    ) -> tuple[UserRecord, str]:
        """Check a username and password and open a session.

        Args:
            username: As typed; compared in its normalized form.
            password: As typed.
            peer: Where the attempt comes from (``tcp4:HOST:PORT``), for
                throttling per address.

        Raises:
            ChatError: bad_credentials, the same for an unknown username;
                rate_limited while the username or the address is throttled.
        """
        config = self._config
        user = None
        key = username_key(username[: config.username_max_length + 1])
        if len(username) <= config.username_max_length:
            user = await self._store.user_by_key(key)
        if len(password.encode("utf-8", "surrogatepass")) > config.password_max_bytes:
            password = ""
        hashed = user.password_hash if user is not None else None
        keys = [f"user:{key}", address_key(peer)]
        if not await self._verify(keys, password, hashed) or user is None:
            raise ChatError(ErrorCode.BAD_CREDENTIALS, "wrong username or password")
        return user, await self._open_session(user)

    async def resume(self, token: str) -> tuple[UserRecord, str]:
        """Find the account of a session token that is still valid.

        Raises:
            ChatError: bad_credentials for an unknown, revoked or expired
                token.
        """
        user = None
        if 0 < len(token) <= _MAX_TOKEN_LENGTH:
            user = await self._store.user_for_session(
                token_digest(token), now_ms(self._clock)
            )
        if user is None:
            raise ChatError(ErrorCode.BAD_CREDENTIALS, "unknown or expired session")
        return user, token

    async def logout(self, token: str) -> None:
        """Revoke a session token."""
        await self._store.delete_session(token_digest(token))

    async def change_password(
        self, user: UserRecord, old_password: str, new_password: str, token: str
    ) -> None:
        """Replace a password and revoke every other session's token.

        Raises:
            ChatError: bad_credentials when the old password is wrong;
                bad_request or too_large for a bad new one; rate_limited
                after too many wrong old passwords.
        """
        self._check_password(new_password, "new_password")
        current = await self._store.user_by_id(user.id)
        if current is None:
            raise ChatError(ErrorCode.BAD_CREDENTIALS, "wrong password")
        # Guessing the old password from a stolen session is throttled like
        # guessing it at login.
        keys = [f"user:{username_key(current.username)}"]
        if not await self._verify(keys, old_password, current.password_hash):
            raise ChatError(ErrorCode.BAD_CREDENTIALS, "wrong password")
        hashed = await self._hasher.hash(new_password)
        await self._store.set_password(user.id, hashed, token_digest(token))

    async def _open_session(self, user: UserRecord) -> str:
        """Make and record a new session token for the user."""
        token = secrets.token_urlsafe(32)
        now = now_ms(self._clock)
        expires_at = now + int(self._config.session_ttl * 1000)
        await self._store.create_session(token_digest(token), user.id, now, expires_at)
        return token
