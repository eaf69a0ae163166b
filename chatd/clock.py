"""Wall-clock time as chatd stores and sends it.

Times are integer milliseconds since the epoch in the store and ISO 8601 UTC
with milliseconds on the wire. The current time always comes from the
reactor (``IReactorTime.seconds``) so that tests can run on a ``Clock``.
"""

import time

from twisted.internet.interfaces import IReactorTime


def now_ms(clock: IReactorTime) -> int:
    """Return the clock's current time in whole milliseconds."""
    return int(clock.seconds() * 1000)


def iso_time(ms: int) -> str:
    """Format epoch milliseconds as ``2026-12-03T18:47:48.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
