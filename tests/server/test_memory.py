"""An open WebSocket keeps nothing of the HTTP request that opened it."""

import gc

from chatd.server.handshake import DeadlineChannel
from tests.support import ChatTestCase


class UpgradedConnectionMemoryTests(ChatTestCase):
    """What an idle, logged-in connection holds on to."""

    def channels(self) -> list:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, DeadlineChannel)]

    async def test_http_channel_is_released_after_upgrade(self):
        """Once upgraded, the twisted.web channel and its request are freed
        (not kept by the idle timeout or as the transport's producer), and
        the handshake text is dropped."""
        await self.start(server={"open_handshake_timeout": 5.0})
        before = len(self.channels())
        clients = [await self.user(f"idle{n}") for n in range(5)]
        self.assertEqual(len(self.channels()), before)

        for connection in self.service.registry.all_sessions():
            self.assertIsNone(connection.http_request_data)
            self.assertEqual(connection.http_headers, {})
            self.assertIsNone(connection._queue)
            self.assertIsNone(connection._outbox)
        await clients[0].sync()
