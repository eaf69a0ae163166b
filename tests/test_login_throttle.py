"""Login throttling and the bcrypt queue cap: the delay logic on a Clock,
and a live password-guessing flood while other users chat."""

import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from chatd.errors import ChatError, ErrorCode
from chatd.passwords import PasswordHasher
from chatd.services.throttle import LoginThrottle, Throttled, address_key
from tests.support import ChatTestCase

USER, PEER = "user:alice", "peer:10.0.0.1"


def make_throttle(clock, allowed=3, delay=1.0, delay_max=8.0, window=100.0):
    """A throttle on ``clock`` with small numbers."""
    return LoginThrottle(clock, allowed, delay, delay_max, window)


def fail(throttle, keys=(USER, PEER)) -> None:
    """Make one attempt under ``keys`` and record it as a failure."""
    throttle.begin(list(keys))
    throttle.end(list(keys), success=False)


class LoginThrottleTests(unittest.TestCase):
    """The delay logic on a ``task.Clock``."""

    def test_allowed_failures_then_growing_delays(self):
        """After ``allowed`` failures each attempt must wait a delay that
        doubles with every failure, up to the cap."""
        clock = task.Clock()
        throttle = make_throttle(clock)
        for _ in range(3):
            fail(throttle)
        waits = []
        for _ in range(6):
            error = self.assertRaises(Throttled, throttle.begin, [USER, PEER])
            waits.append(error.retry_after)
            clock.advance(error.retry_after)
            fail(throttle)
        self.assertEqual(waits, [1.0, 2.0, 4.0, 8.0, 8.0, 8.0])

    def test_early_attempt_refused_without_counting(self):
        """An attempt before the delay is over is refused and does not make
        the delay longer."""
        clock = task.Clock()
        throttle = make_throttle(clock)
        for _ in range(3):
            fail(throttle)
        for _ in range(10):
            self.assertRaises(Throttled, throttle.begin, [USER])
            clock.advance(0.05)
        self.assertEqual(throttle.failures(USER), 3)
        clock.advance(0.5)
        throttle.begin([USER])

    def test_success_resets_username_not_address(self):
        """A right password clears the username's failures; the address's
        stay, so logging in to one's own account resets no guessing."""
        clock = task.Clock()
        throttle = make_throttle(clock)
        for _ in range(3):
            fail(throttle)
        clock.advance(1.0)
        throttle.begin([USER, PEER])
        throttle.end([USER, PEER], success=True, reset=USER)
        self.assertEqual(throttle.failures(USER), 0)
        self.assertEqual(throttle.failures(PEER), 3)
        throttle.begin(["user:bob"])
        throttle.end(["user:bob"], success=False)
        self.assertEqual(throttle.failures("user:bob"), 1)

    def test_each_key_throttles_alone(self):
        """Failures under one address throttle other usernames from it, and
        failures on one username throttle it from every address."""
        clock = task.Clock()
        throttle = make_throttle(clock)
        for n in range(3):
            fail(throttle, (f"user:u{n}", PEER))
        self.assertRaises(Throttled, throttle.begin, ["user:new", PEER])
        throttle.begin(["user:new", "peer:10.0.0.2"])
        for n in range(3):
            fail(throttle, (USER, f"peer:10.0.1.{n}"))
        self.assertRaises(Throttled, throttle.begin, [USER, "peer:10.9.9.9"])

    def test_concurrent_burst_cannot_slip_past(self):
        """Attempts started together (before any outcome is known) are let
        through only up to the allowance; past it one at a time."""
        clock = task.Clock()
        throttle = make_throttle(clock)
        started = 0
        for _ in range(10):
            try:
                throttle.begin([USER])
            except Throttled:
                continue
            started += 1
        self.assertEqual(started, 3)

    def test_many_logins_from_one_address_at_once(self):
        """Many users behind one address may log in together; the address
        holds attempts back only once it has failed."""
        clock = task.Clock()
        throttle = make_throttle(clock)
        address = "peer:10.0.0.7"
        for n in range(50):
            throttle.begin([f"user{n}", address])
        for n in range(50):
            throttle.end([f"user{n}", address], success=True, reset=f"user{n}")
        fail(throttle, ("guessed", address))
        started = 0
        for n in range(10):
            try:
                throttle.begin([f"other{n}", address])
            except Throttled:
                continue
            started += 1
        self.assertEqual(started, 2)

    def test_forgotten_after_quiet_window(self):
        """A key with no failure for ``window`` seconds starts afresh."""
        clock = task.Clock()
        throttle = make_throttle(clock, window=100.0)
        for _ in range(5):
            clock.advance(10)
            try:
                fail(throttle)
            except Throttled:
                pass
        clock.advance(101)
        throttle.begin(["user:other"])
        self.assertEqual(throttle.failures(USER), 0)
        throttle.begin([USER, PEER])

    def test_cancel_counts_nothing(self):
        """An attempt cancelled (no password was checked) is no failure."""
        throttle = make_throttle(task.Clock())
        for _ in range(10):
            throttle.begin([USER])
            throttle.cancel([USER])
        self.assertEqual(throttle.failures(USER), 0)

    def test_huge_failure_counts_do_not_overflow(self):
        """The delay stays at the cap for any number of failures."""
        throttle = make_throttle(task.Clock())
        self.assertEqual(throttle.delay_after(10**6), 8.0)
        self.assertEqual(throttle.delay_after(2), 0.0)

    def test_address_key(self):
        """Ports are left out; IPv6 counts by /64; v4-mapped as IPv4."""
        self.assertEqual(address_key("tcp4:192.0.2.1:5000"), "peer:192.0.2.1")
        self.assertEqual(address_key("tcp4:192.0.2.1:5001"), "peer:192.0.2.1")
        self.assertEqual(
            address_key("tcp6:2001:db8::1:5000"), address_key("tcp6:2001:db8::2:9")
        )
        self.assertEqual(address_key("tcp6:::ffff:192.0.2.1:1"), "peer:192.0.2.1")
        self.assertEqual(
            address_key("unix:/run/chatd.sock"), "peer:unix:/run/chatd.sock"
        )


class HasherQueueTests(unittest.TestCase):
    """The cap on queued bcrypt work."""

    async def test_requests_past_the_queue_are_refused(self):
        """With one thread and a queue of two, a fourth concurrent check is
        refused at once with rate_limited; the others complete; afterwards
        there is room again."""
        hasher = PasswordHasher(reactor, 4, threads=1, max_queued=2)
        hasher.start()
        self.addCleanup(hasher.stop)
        hashed = await hasher.hash("a password")

        accepted = [
            defer.Deferred.fromCoroutine(hasher.check("a password", hashed))
            for _ in range(3)
        ]
        self.assertEqual(hasher.in_flight(), 3)
        with self.assertRaises(ChatError) as caught:
            await hasher.check("a password", hashed)
        self.assertEqual(caught.exception.code, ErrorCode.RATE_LIMITED)
        self.assertEqual(await defer.gatherResults(accepted), [True] * 3)
        self.assertEqual(hasher.in_flight(), 0)
        self.assertTrue(await hasher.check("a password", hashed))


class LoginThrottleProtocolTests(ChatTestCase):
    """Throttling through the live daemon."""

    async def test_right_password_refused_while_throttled(self):
        """After the allowed failures even the right password is answered
        rate_limited until the delay is over; then it works and resets."""
        await self.start(security={"login_failures_allowed": 2, "login_delay": 0.3})
        await self.user("alice")
        client = await self.connect()
        for _ in range(2):
            error = await client.error("login", username="alice", password="wrong one")
            self.assertEqual(error["code"], "bad_credentials")
        error = await client.error("login", username="ALICE", password="correct horse")
        self.assertEqual(error["code"], "rate_limited")
        self.assertIn("retry in 1 s", error["message"])

        await task.deferLater(reactor, 0.35, lambda: None)
        await client.call("login", username="alice", password="correct horse")

    async def test_guessing_flood_neither_succeeds_nor_stalls(self):
        """Several connections flood wrong-password logins for one user (the
        right password among the later guesses) while two others chat: the
        flood never logs in, bcrypt ran only a handful of times, and every
        chat round trip stays fast."""
        await self.start(
            security={
                "bcrypt_cost": 10,
                "login_failures_allowed": 3,
                "login_delay": 0.5,
                "login_delay_max": 5.0,
            }
        )
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        await self.user("victim", password="the real one")
        hasher = self.service._hasher
        checks = []
        real_check = hasher._check_sync
        self.patch(hasher, "_check_sync", lambda *a: checks.append(1) or real_check(*a))

        attackers = [await self.connect() for _ in range(4)]
        guesses = [f"guess {n:04d}" for n in range(60)]
        guesses[40] = "the real one"
        flood = [
            attacker.request("login", username="victim", password=guess)
            for attacker in attackers
            for guess in guesses
        ]

        latencies = []
        for n in range(20):
            started = time.monotonic()
            await alice.call("send_message", to_user=bob.user["id"], content=f"{n}")
            await bob.next_event("message")
            latencies.append(time.monotonic() - started)

        replies = [await r for r in flood]
        self.assertFalse([r for r in replies if r["ok"]])
        codes = {r["error"]["code"] for r in replies}
        self.assertEqual(codes, {"bad_credentials", "rate_limited"})
        self.assertLessEqual(
            sum(r["error"]["code"] == "bad_credentials" for r in replies), 5
        )
        self.assertLessEqual(len(checks), 5)
        self.assertLess(max(latencies), 0.5)
