"""Password hashing with bcrypt, off the reactor thread.

bcrypt reads at most 72 bytes and refuses NUL bytes, so every password is
first reduced to the base64 of its SHA-256 digest (44 ASCII bytes): a
password of any length counts in full and never makes the library raise.
Hashing runs in a dedicated thread pool whose size caps the bcrypt work in
flight; requests beyond it wait their turn without blocking the reactor,
and past ``max_queued`` waiting requests a new one is refused at once
(``rate_limited``), so a flood of logins cannot queue up unbounded work.
"""

import base64
import hashlib

import bcrypt
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from chatd.errors import ChatError, ErrorCode


def _prehash(password: str) -> bytes:
    """Reduce a password of any length to 44 bytes bcrypt takes whole."""
    digest = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest)


class PasswordHasher:
    """Hash and check passwords in a thread pool.

    Args:
        reactor: The reactor whose threads report back.
        cost: bcrypt's log2 work factor.
        threads: How many hashes may run at once.
        max_queued: How many more may wait for a thread; None for no limit.
    """

    def __init__(self, reactor, cost: int, threads: int, max_queued: int | None = None):
        self._reactor = reactor
        self._cost = cost
        self._capacity = None if max_queued is None else threads + max_queued
        self._in_flight = 0
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="bcrypt")
        self._dummy_hash: bytes | None = None

    def start(self) -> None:
        """Start the hashing threads."""
        self._pool.start()

    def stop(self) -> None:
        """Stop the hashing threads once the queued work is done."""
        self._pool.stop()

    async def _run(self, function, *args):
        """Run bcrypt work in the pool, or refuse it when the queue is full.

        Raises:
            ChatError: rate_limited when ``max_queued`` requests wait already.
        """
        if self._capacity is not None and self._in_flight >= self._capacity:
            raise ChatError(
                ErrorCode.RATE_LIMITED, "the server is busy checking passwords; retry"
            )
        self._in_flight += 1
        try:
            return await deferToThreadPool(self._reactor, self._pool, function, *args)
        finally:
            self._in_flight -= 1

    def in_flight(self) -> int:
        """How many hashes run or wait for a thread now."""
        return self._in_flight

    async def hash(self, password: str) -> bytes:
        """Return a bcrypt hash of the password.

        Raises:
            ChatError: rate_limited when too many hashes wait already.
        """
        return await self._run(self._hash_sync, password)

    async def check(self, password: str, hashed: bytes | None) -> bool:
        """Answer whether the password matches the hash.

        Raises ``ChatError`` (rate_limited) when too many hashes wait already.
        With no hash (an unknown user) a dummy hash is checked, so that the
        answer takes as long as for a real account.
        """
        if hashed is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a real password")
            hashed = self._dummy_hash
            await self._run(self._check_sync, password, hashed)
            return False
        return await self._run(self._check_sync, password, hashed)

    def _hash_sync(self, password: str) -> bytes:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self._cost))

    @staticmethod
    def _check_sync(password: str, hashed: bytes) -> bool:
        try:
            return bcrypt.checkpw(_prehash(password), hashed)
        except ValueError:
            return False
