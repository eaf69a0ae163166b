"""The online registry: user id to the sessions open on this node.

A user may be online from several devices at once; sessions are kept in the
order they opened, so the oldest is first. Delivery encodes once and frames
once (an Autobahn prepared message) for every session it goes to.
"""

from collections.abc import Callable, Iterable
from typing import Any


class Registry:
    """Who is online here, and how to reach their sessions.

    Args:
        prepare: Frames a payload once for many sessions (the factory's
            ``prepareMessage``); None to frame per session.
    """

    def __init__(self, prepare: Callable[[bytes], Any] | None = None):
        self._prepare = prepare
        self._sessions: dict[int, dict[Any, None]] = {}

    def add(self, user_id: int, session: Any) -> bool:
        """Register a session; True when it is the user's first."""
        sessions = self._sessions.setdefault(user_id, {})
        sessions[session] = None
        return len(sessions) == 1

    def remove(self, user_id: int, session: Any) -> bool:
        """Unregister a session; True when it was the user's last."""
        sessions = self._sessions.get(user_id)
        if sessions is None or session not in sessions:
            return False
        del sessions[session]
        if sessions:
            return False
        del self._sessions[user_id]
        return True

    def sessions_of(self, user_id: int) -> list[Any]:
        """A user's open sessions, oldest first."""
        return list(self._sessions.get(user_id, ()))

    def all_sessions(self) -> list[Any]:
        """Every registered session."""
        return [s for sessions in self._sessions.values() for s in sessions]

    def is_online(self, user_id: int) -> bool:
        """Answer whether the user has an open session here."""
        return user_id in self._sessions

    def online_user_ids(self) -> Iterable[int]:
        """The users with an open session here."""
        return self._sessions.keys()

    def online_count(self) -> int:
        """How many users are online here."""
        return len(self._sessions)

    def deliver(
        self, user_ids: Iterable[int], payload: bytes, exclude: Any = None
    ) -> int:
        """Send an encoded event to the users' sessions, but ``exclude``."""
        targets = [
            session
            for user_id in user_ids
            for session in self._sessions.get(user_id, ())
            if session is not exclude
        ]
        return self._send(targets, payload)

    def deliver_to_all(self, payload: bytes) -> int:
        """Send an encoded event to every registered session."""
        return self._send(self.all_sessions(), payload)

    def _send(self, targets: list[Any], payload: bytes) -> int:
        prepared = None
        if len(targets) > 1 and self._prepare is not None:
            prepared = self._prepare(payload)
        for session in targets:
            session.push(payload, prepared)
        return len(targets)
