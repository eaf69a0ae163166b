"""Connection limits: the authentication timeout, the open-handshake
timeout, the Origin allow-list, and what change_password revokes."""

import base64
import os
import time

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from chatd.server.origins import OriginPolicy
from tests.support import WAIT, ChatTestCase


class _RawClient(Protocol):
    """Keeps every byte the server sends and when the connection ended."""

    def __init__(self):
        self.received = b""
        self.lost: defer.Deferred = defer.Deferred()

    def dataReceived(self, data):  # noqa: N802
        self.received += data

    def connectionLost(self, reason):  # noqa: N802
        self.lost.callback(time.monotonic())


async def raw_connect(port: int) -> _RawClient:
    """Open a bare TCP connection to the server, speaking nothing."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return await endpoint.connect(Factory.forProtocol(_RawClient))


def upgrade_request(port: int, origin: str | None = None) -> bytes:
    """A well-formed WebSocket opening handshake for /ws."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status_of(client: _RawClient) -> bytes:
    """Wait for the first line of the server's HTTP answer."""
    deadline = time.monotonic() + WAIT
    while b"\r\n" not in client.received and time.monotonic() < deadline:
        await task.deferLater(reactor, 0.01, lambda: None)
    return client.received.split(b"\r\n", 1)[0]


async def wait(seconds: float) -> None:
    """Let the reactor run for a while (for things that must NOT happen)."""
    await task.deferLater(reactor, seconds, lambda: None)


class AuthTimeoutTests(ChatTestCase):
    """[server] auth_timeout."""

    async def test_idle_unauthenticated_connection_closed_4000(self):
        """A connection that does not log in within auth_timeout is closed
        with 4000; one that logged in in time stays open past it."""
        await self.start(server={"auth_timeout": 0.2})
        idle = await self.connect()
        alice = await self.user("alice")
        pinging = await self.connect()
        await pinging.call("ping")

        code, reason = await idle.closed
        self.assertEqual(code, 4000)
        self.assertIn("authentication", reason)
        # Pings are no login: the timer is not restarted by traffic.
        code, _ = await pinging.closed
        self.assertEqual(code, 4000)
        await wait(0.3)
        self.assertIsNone(alice.close_code)
        await alice.call("get_friends")


class OpenHandshakeTimeoutTests(ChatTestCase):
    """[server] open_handshake_timeout covers the whole HTTP upgrade."""

    async def test_silent_client_dropped(self):
        """A client that connects and never sends a byte is dropped after
        open_handshake_timeout."""
        await self.start(server={"open_handshake_timeout": 0.3})
        started = time.monotonic()
        client = await raw_connect(self.port)
        ended = await client.lost.addTimeout(WAIT, reactor)
        self.assertGreaterEqual(ended - started, 0.25)
        self.assertLess(ended - started, 3.0)

    async def test_trickling_headers_dropped(self):
        """A client that sends its request line and then trickles headers
        (slowloris) is dropped at the deadline even though it keeps
        sending."""
        await self.start(server={"open_handshake_timeout": 0.3})
        started = time.monotonic()
        client = await raw_connect(self.port)
        client.transport.write(b"GET /ws HTTP/1.1\r\n")
        while not client.lost.called and time.monotonic() - started < WAIT:
            client.transport.write(b"X-Slow: 1\r\n")
            await wait(0.05)
        ended = await client.lost.addTimeout(WAIT, reactor)
        self.assertLess(ended - started, 3.0)

    async def test_open_websocket_outlives_the_deadline(self):
        """A connection that finished its upgrade in time is not dropped by
        the handshake deadline."""
        await self.start(server={"open_handshake_timeout": 0.2})
        alice = await self.user("alice")
        await wait(0.4)
        self.assertIsNone(alice.close_code)
        await alice.sync()


class OriginTests(ChatTestCase):
    """[server] allowed_origins."""

    sections = {
        "server": {
            "allowed_origins": ("https://chat.example.com", "http://*.example.org:*")
        }
    }

    async def test_disallowed_origin_refused_403(self):
        """A browser Origin not on the list gets the handshake refused with
        HTTP 403 and the connection closed."""
        await self.start()
        client = await raw_connect(self.port)
        client.transport.write(upgrade_request(self.port, "https://evil.example"))
        self.assertTrue((await status_of(client)).startswith(b"HTTP/1.1 403 "))
        await client.lost.addTimeout(WAIT, reactor)

    async def test_allowed_origins_accepted(self):
        """An Origin on the list (exactly or by wildcard) is switched to
        WebSocket; so is a client that sends no Origin (not a browser)."""
        await self.start()
        for origin in (
            "https://chat.example.com",
            "http://app.example.org:8080",
            None,
        ):
            client = await raw_connect(self.port)
            client.transport.write(upgrade_request(self.port, origin))
            status = await status_of(client)
            self.assertEqual(status, b"HTTP/1.1 101 Switching Protocols", origin)
            client.transport.loseConnection()

    async def test_chat_client_with_allowed_origin(self):
        """A real client sending an allowed Origin can register and chat."""
        await self.start()
        client = await self.connect(Origin="https://chat.example.com")
        await client.call("register", username="alice", password="correct horse")


class ChangePasswordRevocationTests(ChatTestCase):
    """change_password revokes the other sessions' tokens."""

    async def test_other_tokens_no_longer_resume(self):
        """After change_password the other sessions are closed with 4002 and
        their tokens no longer resume; the current session's token does."""
        await self.start()
        alice = await self.user("alice")
        phone = await self.connect()
        phone_token = (
            await phone.call("login", username="alice", password="correct horse")
        )["session_token"]
        tablet = await self.connect()
        tablet_token = (
            await tablet.call("login", username="alice", password="correct horse")
        )["session_token"]

        await alice.call(
            "change_password", old_password="correct horse", new_password="new words"
        )
        for other in (phone, tablet):
            code, _ = await other.closed
            self.assertEqual(code, 4002)
        for token in (phone_token, tablet_token):
            fresh = await self.connect()
            error = await fresh.error("resume", session_token=token)
            self.assertEqual(error["code"], "bad_credentials")
        again = await self.connect()
        resumed = await again.call("resume", session_token=alice.token)
        self.assertEqual(resumed["user"]["id"], alice.user["id"])
        await alice.sync()

    async def test_wrong_old_password_changes_nothing(self):
        """A wrong old password is bad_credentials and revokes nothing."""
        await self.start()
        alice = await self.user("alice")
        phone = await self.connect()
        token = (await phone.call("login", username="alice", password="correct horse"))[
            "session_token"
        ]
        error = await alice.error(
            "change_password", old_password="not it at all", new_password="new words"
        )
        self.assertEqual(error["code"], "bad_credentials")
        await phone.sync()
        fresh = await self.connect()
        await fresh.call("resume", session_token=token)


class OriginPolicyTests(unittest.TestCase):
    """The Origin matching rules."""

    def test_matching(self):
        """Entries match the origin as sent or with its port spelled out,
        ignoring case; a suffix is no match; no Origin is let in."""
        policy = OriginPolicy(("https://chat.example.com", "http://*.example.org:*"))
        for origin in (
            "https://chat.example.com",
            "HTTPS://Chat.Example.com:443",
            "http://app.example.org:8080",
            None,
            "",
        ):
            self.assertTrue(policy.allows(origin), origin)
        for origin in (
            "https://chat.example.com.evil.test",
            "http://chat.example.com",
            "https://evil.test",
            "null",
            "https://chat.example.com:bad",
        ):
            self.assertFalse(policy.allows(origin), origin)

    def test_empty_list_allows_all(self):
        """With no entries every origin, "null" included, is allowed."""
        policy = OriginPolicy(())
        self.assertTrue(policy.allows("null"))
        self.assertTrue(policy.allows("https://anything.test"))


class NoOriginListTests(ChatTestCase):
    """allowed_origins empty (the default)."""

    async def test_null_origin_accepted(self):
        """Regression: Autobahn refused the "null" origin (file:// pages,
        sandboxed frames) with 400 even though an empty list means every
        origin is allowed."""
        await self.start()
        client = await raw_connect(self.port)
        client.transport.write(upgrade_request(self.port, "null"))
        self.assertEqual(await status_of(client), b"HTTP/1.1 101 Switching Protocols")
        client.transport.loseConnection()


class ClosingSessionPushTests(unittest.TestCase):
    """Regression: an event pushed to a session whose client had sent its
    close frame (Autobahn state CLOSING, onClose not yet run) raised
    Disconnected out of Registry.deliver, so the sessions after it in the
    same delivery got nothing (seen as a logged error from a presence
    flush in tests/test_usernames.py)."""

    def test_push_to_closing_session_is_dropped(self):
        """push on a CLOSING session sends nothing and raises nothing, and
        delivery goes on to the next session."""
        from chatd.server.protocol import ChatServerProtocol
        from chatd.server.registry import Registry

        closing = ChatServerProtocol()
        closing._open = True
        closing.state = ChatServerProtocol.STATE_CLOSING
        received = []

        class Open:
            def push(self, payload, prepared=None):
                received.append(payload)

        registry = Registry()
        registry.add(1, closing)
        registry.add(2, Open())
        self.assertEqual(registry.deliver([1, 2], b"event"), 2)
        self.assertEqual(received, [b"event"])
