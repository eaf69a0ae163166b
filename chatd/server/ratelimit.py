"""A token bucket: the per-connection request rate limit.

Each request takes one token; tokens come back at ``rate`` a second up to
``burst``. Time comes from the reactor (``IReactorTime.seconds``), so tests
can drive the bucket with a ``task.Clock``.
"""

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    """Allow ``rate`` events a second on average, ``burst`` at once.

    Args:
        rate: Tokens added a second; must be positive.
        burst: The most tokens the bucket holds (it starts full).
        clock: Where the time comes from.
    """

    def __init__(self, rate: float, burst: int, clock: IReactorTime):
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and burst")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.seconds()

    def _refill(self) -> None:
        now = self._clock.seconds()
        # A clock that goes back (a Clock in a test, a wall clock stepped
        # by NTP) must not take tokens away or mint extra ones.
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now

    def take(self) -> bool:
        """Take one token; False (and nothing taken) when none is left."""
        self._refill()
        # The epsilon absorbs float error: ten refills of 0.1 s at 10/s must
        # make a whole token.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(self._tokens - 1.0, 0.0)
            return True
        return False

    def available(self) -> float:
        """How many tokens the bucket holds now."""
        self._refill()
        return self._tokens
