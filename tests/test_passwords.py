"""bcrypt off the reactor thread, with passwords counted in full."""

import threading

import bcrypt
from twisted.internet import reactor
from twisted.trial import unittest

from chatd.passwords import PasswordHasher


class PasswordHasherTests(unittest.TestCase):
    """Hashing and checking."""

    def setUp(self):
        self.hasher = PasswordHasher(reactor, cost=4, threads=1)
        self.hasher.start()
        self.addCleanup(self.hasher.stop)

    async def test_round_trip(self):
        """A hash checks against its password and no other."""
        hashed = await self.hasher.hash("correct horse")
        self.assertTrue(hashed.startswith(b"$2b$04$"))
        self.assertTrue(await self.hasher.check("correct horse", hashed))
        self.assertFalse(await self.hasher.check("correct horsf", hashed))

    async def test_long_passwords_count_in_full(self):
        """Passwords that differ only after byte 72 do not match, and a
        1 KiB password neither truncates nor raises."""
        base = "x" * 100
        hashed = await self.hasher.hash(base + "a")
        self.assertFalse(await self.hasher.check(base + "b", hashed))
        long = "é" * 512
        self.assertTrue(await self.hasher.check(long, await self.hasher.hash(long)))

    async def test_nul_bytes_are_fine(self):
        """A password with NUL characters hashes and checks."""
        hashed = await self.hasher.hash("a\x00b\x00c")
        self.assertTrue(await self.hasher.check("a\x00b\x00c", hashed))
        self.assertFalse(await self.hasher.check("a", hashed))

    async def test_unknown_user_and_garbage_hash(self):
        """No hash, or a corrupt one, is a plain False."""
        self.assertFalse(await self.hasher.check("anything", None))
        self.assertFalse(await self.hasher.check("anything", b"not a bcrypt hash"))

    async def test_never_on_the_reactor_thread(self):
        """bcrypt runs in the pool's threads, not the reactor's."""
        seen = []
        real = bcrypt.hashpw

        def spy(password, salt):
            seen.append(threading.current_thread() is threading.main_thread())
            return real(password, salt)

        self.patch(bcrypt, "hashpw", spy)
        await self.hasher.hash("correct horse")
        self.assertEqual(seen, [False])
