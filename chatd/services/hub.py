"""What services need of the online registry, and nothing more.

Keeping this interface narrow is what lets a later version deliver to
sessions on other nodes (over a bus) without touching the services.
"""

from collections.abc import Iterable
from typing import Any, Protocol


class Hub(Protocol):
    """The online registry as the services see it."""

    def is_online(self, user_id: int) -> bool:
        """Answer whether the user has at least one open session."""

    def online_user_ids(self) -> Iterable[int]:
        """Every user with at least one open session."""

    def online_count(self) -> int:
        """How many users are online."""

    def deliver(
        self, user_ids: Iterable[int], payload: bytes, exclude: Any = None
    ) -> int:
        """Send an encoded event to every session of these users but
        ``exclude``; return how many sessions it went to."""

    def deliver_to_all(self, payload: bytes) -> int:
        """Send an encoded event to every authenticated session."""
