"""The online registry: sessions per user, delivery framed once."""

from twisted.trial import unittest

from chatd.server.registry import Registry


class _Session:
    def __init__(self):
        self.pushed = []

    def push(self, payload, prepared=None):
        self.pushed.append((payload, prepared))


class RegistryTests(unittest.TestCase):
    """Adding, removing, delivering."""

    def test_first_and_last_session(self):
        """add says when a user comes online, remove when they go."""
        registry = Registry()
        phone, laptop = _Session(), _Session()
        self.assertTrue(registry.add(1, phone))
        self.assertFalse(registry.add(1, laptop))
        self.assertEqual(registry.sessions_of(1), [phone, laptop])
        self.assertFalse(registry.remove(1, phone))
        self.assertTrue(registry.is_online(1))
        self.assertTrue(registry.remove(1, laptop))
        self.assertFalse(registry.is_online(1))
        self.assertFalse(registry.remove(1, laptop))

    def test_delivery_prepares_once_for_many(self):
        """Several recipients share one prepared frame; exclude is skipped."""
        prepared = []
        registry = Registry(lambda payload: prepared.append(payload) or "frame")
        sessions = [_Session() for _ in range(3)]
        for user_id, session in zip((1, 2, 2), sessions, strict=True):
            registry.add(user_id, session)
        count = registry.deliver([1, 2, 3], b"event", exclude=sessions[2])
        self.assertEqual(count, 2)
        self.assertEqual(prepared, [b"event"])
        self.assertEqual(sessions[0].pushed, [(b"event", "frame")])
        self.assertEqual(sessions[2].pushed, [])

    def test_single_recipient_is_not_prepared(self):
        """One recipient gets the plain payload."""
        registry = Registry(lambda payload: self.fail("prepared for one"))
        session = _Session()
        registry.add(5, session)
        self.assertEqual(registry.deliver([5], b"x"), 1)
        self.assertEqual(session.pushed, [(b"x", None)])
        self.assertEqual(registry.deliver_to_all(b"y"), 1)
        self.assertEqual(registry.online_count(), 1)
