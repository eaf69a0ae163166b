"""Login throttling: growing delays per username and per peer address.

Every password check is made under two keys, the username (in its compared
form) and the address it came from. A key may fail ``allowed`` times; after
that each further attempt must wait a delay that starts at ``delay`` and
doubles with every failure, up to ``delay_max``. An attempt that comes too
early is refused at once, with no bcrypt work and no hint whether the
password was right, so a guessing flood costs the daemon almost nothing.
While an attempt on a throttled key is being checked, others on that key
wait for its outcome, so a burst from many connections at once cannot slip
past the count (for an address only once it has failed, see
``_over_allowance``). A success clears its username's failures; an
address's failures are only forgotten after ``window`` quiet seconds, so
that logging
in to an account of one's own does not reset a guessing spree.
"""

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

#: Most keys remembered; past it the least recently failed are forgotten.
MAX_TRACKED_KEYS = 100_000


@dataclass
class _Record:
    failures: int = 0
    pending: int = 0
    not_before: float = 0.0
    last_failure: float = 0.0


def address_key(peer: str) -> str:
    """The throttling key of a peer, given as Autobahn describes it
    (``tcp4:HOST:PORT``, ``tcp6:HOST:PORT``, ``unix:PATH``): an IPv4
    address whole, an IPv6 address by its /64 (one host usually owns a
    whole /64), the port left out."""
    kind, _, rest = peer.partition(":")
    host = rest.rpartition(":")[0] if kind in ("tcp4", "tcp6") else peer
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"peer:{host}"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return f"peer:{address.ipv4_mapped}"
        network = ipaddress.ip_network(f"{address}/64", strict=False)
        return f"peer:{network}"
    return f"peer:{address}"


class Throttled(Exception):
    """An attempt refused for now; ``retry_after`` says for how long."""

    def __init__(self, retry_after: float):
        super().__init__(f"retry after {retry_after:.1f} s")
        self.retry_after = retry_after


class LoginThrottle:
    """Count failed password checks per key and hold back further ones.

    Args:
        clock: Where the time comes from.
        allowed: Failures a key may have before attempts are delayed.
        delay: The first delay, in seconds; it doubles with each failure.
        delay_max: The longest delay.
        window: Seconds without a failure after which a key is forgotten.
    """

    def __init__(
        self,
        clock: IReactorTime,
        allowed: int,
        delay: float,
        delay_max: float,
        window: float,
    ):
        self._clock = clock
        self._allowed = allowed
        self._delay = delay
        self._delay_max = delay_max
        self._window = window
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        """The wait imposed after ``failures`` failures (0 while allowed)."""
        excess = failures - self._allowed
        if excess < 0:
            return 0.0
        # Cap the exponent: 2 ** 1000 would overflow to inf as a float.
        return min(self._delay * 2.0 ** min(excess, 64), self._delay_max)

    def _prune(self, now: float) -> None:
        records = self._records
        while records:
            key, record = next(iter(records.items()))
            stale = record.pending == 0 and now - record.last_failure > self._window
            if not stale and len(records) <= MAX_TRACKED_KEYS:
                break
            del records[key]

    def begin(self, keys: list[str]) -> None:
        """Start an attempt under these keys, or refuse it.

        Raises:
            Throttled: when a key must wait longer, or one of its attempts
                is still being checked while it is over its allowance.
        """
        now = self._clock.seconds()
        self._prune(now)
        wait = 0.0
        for key in keys:
            record = self._records.get(key)
            if record is None:
                continue
            if record.not_before > now:
                wait = max(wait, record.not_before - now)
            elif record.pending and self._over_allowance(key, record):
                wait = max(wait, self._delay)
        if wait > 0:
            raise Throttled(wait)
        for key in keys:
            record = self._records.setdefault(key, _Record(last_failure=now))
            record.pending += 1

    def _over_allowance(self, key: str, record: _Record) -> bool:
        """Whether the attempts in progress could take a key past its
        allowance. For a username every attempt in progress counts as a
        possible failure, so a burst of guesses cannot slip past the count;
        an address must have failed already, so that many people behind one
        address (a NAT, a proxy) can log in at once."""
        if key.startswith("peer:") and record.failures == 0:
            return False
        return record.failures + record.pending >= self._allowed

    def end(self, keys: list[str], success: bool, reset: str | None = None) -> None:
        """Record the outcome of an attempt started with ``begin``.

        Args:
            keys: The keys given to ``begin``.
            success: Whether the password was right.
            reset: On success, the key whose failures are cleared.
        """
        now = self._clock.seconds()
        for key in keys:
            record = self._records.get(key)
            if record is None:
                continue
            record.pending = max(record.pending - 1, 0)
            if success:
                if key == reset and record.pending == 0:
                    del self._records[key]
                elif key == reset:
                    record.failures, record.not_before = 0, 0.0
                continue
            record.failures += 1
            record.last_failure = now
            record.not_before = now + self.delay_after(record.failures)
            self._records.move_to_end(key)

    def cancel(self, keys: list[str]) -> None:
        """Forget an attempt started with ``begin`` that checked nothing."""
        for key in keys:
            record = self._records.get(key)
            if record is not None:
                record.pending = max(record.pending - 1, 0)

    def failures(self, key: str) -> int:
        """How many failures a key has on record."""
        record = self._records.get(key)
        return record.failures if record is not None else 0
