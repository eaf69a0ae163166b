"""The Origin allow-list ([server] allowed_origins), checked at handshake.

Autobahn's own check compares patterns against ``scheme://host:port`` with
the port always spelled out, so the natural entry ``https://chat.example.com``
never matches what a browser sends, and it refuses with 400 rather than 403.
chatd checks the Origin itself: an entry matches the origin as the browser
sent it or with its port spelled out, ``*`` matches anything, case is
ignored. A client that sends no Origin is not a browser and is let in (the
list guards against other web pages, not other programs).
"""

import re
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _pattern(entry: str) -> re.Pattern:
    return re.compile(
        ".*".join(re.escape(part) for part in entry.lower().split("*")), re.DOTALL
    )


class OriginPolicy:
    """Which Origin headers may open a WebSocket.

    Args:
        allowed: Entries with ``*`` wildcards; empty allows every origin.
    """

    def __init__(self, allowed: tuple[str, ...] | list[str]):
        self._patterns = [_pattern(entry) for entry in allowed]

    def allows(self, origin: str | None) -> bool:
        """Answer whether a handshake with this Origin header may proceed."""
        # Autobahn gives "" when the header is absent.
        if not self._patterns or not origin:
            return True
        origin = origin.strip().lower()
        candidates = {origin}
        try:
            parts = urlsplit(origin)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        if parts.hostname and port:
            candidates.add(f"{parts.scheme}://{parts.hostname}:{port}")
            candidates.add(f"{parts.scheme}://{parts.hostname}")
        return any(
            pattern.fullmatch(candidate)
            for pattern in self._patterns
            for candidate in candidates
        )
