"""Password hashing with bcrypt, off the reactor thread.

bcrypt reads at most 72 bytes and refuses NUL bytes, so every password is
first reduced to the base64 of its SHA-256 digest (44 ASCII bytes): a
password of any length counts in full and never makes the library raise.
Hashing runs in a dedicated thread pool whose size caps the bcrypt work in
flight; requests beyond it wait their turn without blocking the reactor.
"""

import base64
import hashlib

import bcrypt
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


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
    """

    def __init__(self, reactor, cost: int, threads: int):
        self._reactor = reactor
        self._cost = cost
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="bcrypt")
        self._dummy_hash: bytes | None = None

    def start(self) -> None:
        """Start the hashing threads."""
        self._pool.start()

    def stop(self) -> None:
        """Stop the hashing threads once the queued work is done."""
        self._pool.stop()

    async def hash(self, password: str) -> bytes:
        """Return a bcrypt hash of the password."""
        return await deferToThreadPool(
            self._reactor, self._pool, self._hash_sync, password
        )

    async def check(self, password: str, hashed: bytes | None) -> bool:
        """Answer whether the password matches the hash.

        With no hash (an unknown user) a dummy hash is checked, so that the
        answer takes as long as for a real account.
        """
        if hashed is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a real password")
            hashed = self._dummy_hash
            await deferToThreadPool(
                self._reactor, self._pool, self._check_sync, password, hashed
            )
            return False
        return await deferToThreadPool(
            self._reactor, self._pool, self._check_sync, password, hashed
        )

    def _hash_sync(self, password: str) -> bytes:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self._cost))

    @staticmethod
    def _check_sync(password: str, hashed: bytes) -> bool:
        try:
            return bcrypt.checkpw(_prehash(password), hashed)
        except ValueError:
            return False
