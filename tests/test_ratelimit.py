"""The per-connection request rate limit: the token bucket on a Clock, and
a live connection that bursts past it."""

from twisted.internet import reactor, task
from twisted.trial import unittest

from chatd.server.ratelimit import TokenBucket
from tests.support import ChatTestCase


class TokenBucketTests(unittest.TestCase):
    """The bucket on a ``task.Clock``."""

    def test_burst_then_refused(self):
        """A full bucket allows ``burst`` takes at once, then refuses."""
        bucket = TokenBucket(2.0, 5, task.Clock())
        self.assertEqual([bucket.take() for _ in range(6)], [True] * 5 + [False])

    def test_refills_at_rate_up_to_burst(self):
        """Tokens come back at ``rate`` a second and never past ``burst``."""
        clock = task.Clock()
        bucket = TokenBucket(2.0, 5, clock)
        for _ in range(5):
            bucket.take()
        clock.advance(0.4)
        self.assertFalse(bucket.take())
        clock.advance(0.1)
        self.assertTrue(bucket.take())
        self.assertFalse(bucket.take())
        clock.advance(1000)
        self.assertEqual(bucket.available(), 5.0)

    def test_steady_rate_is_sustained(self):
        """Taking one token every 1/rate seconds never runs dry."""
        clock = task.Clock()
        bucket = TokenBucket(10.0, 1, clock)
        for _ in range(100):
            self.assertTrue(bucket.take())
            clock.advance(0.1)

    def test_clock_going_back_mints_nothing(self):
        """A clock stepped backwards neither adds nor removes tokens."""
        clock = task.Clock()
        clock.advance(100)
        bucket = TokenBucket(1.0, 2, clock)
        bucket.take()
        bucket.take()
        clock.rightNow = 50.0
        self.assertFalse(bucket.take())
        clock.advance(1.0)
        self.assertTrue(bucket.take())

    def test_bad_parameters(self):
        """A rate or burst of zero is refused (0 means "off" in config)."""
        self.assertRaises(ValueError, TokenBucket, 0.0, 5, task.Clock())
        self.assertRaises(ValueError, TokenBucket, 1.0, 0, task.Clock())


class RateLimitProtocolTests(ChatTestCase):
    """The limit on a live connection."""

    async def test_burst_past_limit_then_refill(self):
        """Past the burst, requests are answered rate_limited echoing id and
        action; other connections are not affected, and after a refill the
        connection works again."""
        await self.start(security={"rate_limit": 20.0, "rate_burst": 10})
        client = await self.connect()
        other = await self.connect()
        replies = [await r for r in [client.request("ping") for _ in range(25)]]

        ok = [r for r in replies if r["ok"]]
        refused = [r for r in replies if not r["ok"]]
        # The burst, plus what refilled while the frames were in flight.
        self.assertGreaterEqual(len(ok), 10)
        self.assertLess(len(ok), 20)
        self.assertEqual({r["error"]["code"] for r in refused}, {"rate_limited"})
        self.assertEqual({r["action"] for r in refused}, {"ping"})
        self.assertEqual([r["id"] for r in replies], sorted(r["id"] for r in replies))
        await other.sync()

        await task.deferLater(reactor, 0.3, lambda: None)
        await client.sync()
        await client.call("ping")

    async def test_junk_frames_cost_tokens(self):
        """Binary and undecodable frames also take tokens, so a junk flood
        is throttled like a flood of requests."""
        await self.start(security={"rate_limit": 1.0, "rate_burst": 3})
        client = await self.connect()
        for _ in range(3):
            await client.raw_reply(b"\x00junk", binary=True)
        reply = await client.request("ping")
        self.assertEqual(reply["error"]["code"], "rate_limited")

    async def test_zero_turns_it_off(self):
        """With rate_limit = 0 a burst of 200 requests is all answered."""
        await self.start(security={"rate_limit": 0.0, "rate_burst": 1})
        client = await self.connect()
        replies = [await r for r in [client.request("ping") for _ in range(200)]]
        self.assertTrue(all(r["ok"] for r in replies))
