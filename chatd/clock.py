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


_last_second: list = [None, ""]


def iso_time(ms: int) -> str:
    """Format epoch milliseconds as ``2026-12-03T18:47:48.123Z``."""
    seconds, millis = divmod(ms, 1000)
    # Messages come in bursts within one second: format the second once.
    if _last_second[0] != seconds:
        _last_second[:] = [
            seconds,
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)),
        ]
    return f"{_last_second[1]}.{millis:03d}Z"
