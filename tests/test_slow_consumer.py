"""Slow consumers: a client that stops reading is cut off, not buffered.

The slow client here is a raw TCP connection that does the WebSocket
handshake and a login by hand and then stops reading, with small socket
buffers at both ends so that the daemon's own buffer fills quickly.
"""

import base64
import json
import os
import socket
import struct

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from chatd.server.flow import pending_bytes
from tests.support import ChatTestCase

#: The cap on what waits unsent for one connection, in this test; above
#: the largest backlog batch the test makes (200 messages of CONTENT).
CAP = 256 * 1024
#: The most messages sent before the slow client must have been closed.
MESSAGES = 1000
#: Messages sent after it was closed.
AFTER = 20
CONTENT = "x" * 1000


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked WebSocket frame, as a client must send it."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split the bytes after the handshake into (opcode, payload) frames;
    an incomplete last frame is left out."""
    frames, offset = [], 0
    while offset + 2 <= len(data):
        opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
        start = offset + 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, start)
            start += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, start)
            start += 8
        if start + length > len(data):
            break
        frames.append((opcode, data[start : start + length]))
        offset = start + length
    return frames


class RawClient(protocol.Protocol):
    """A WebSocket client by hand that can stop reading at will."""

    def __init__(self):
        self.received = b""
        self.lost: defer.Deferred = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred]] = []
        self._answered_close = False

    def connectionMade(self):  # noqa: N802
        """Shrink the receive buffer and send the opening handshake."""
        handle = self.transport.getHandle()
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )

    def dataReceived(self, data):  # noqa: N802
        """Keep everything; wake whoever waits for a marker; answer a close
        frame to finish the closing handshake."""
        self.received += data
        if not self._answered_close and b"\r\n\r\n" in self.received:
            closes = [p for op, p in self.frames() if op == 8]
            if closes:
                self._answered_close = True
                self.transport.write(client_frame(closes[0][:2], opcode=8))
        for marker, waiter in list(self._waiting):
            if marker in self.received:
                self._waiting.remove((marker, waiter))
                waiter.callback(None)

    def connectionLost(self, reason):  # noqa: N802
        """Note the end."""
        self.lost.callback(None)

    def wait_for(self, marker: bytes) -> defer.Deferred:
        """Fire once ``marker`` has been received."""
        waiter: defer.Deferred = defer.Deferred()
        if marker in self.received:
            waiter.callback(None)
        else:
            self._waiting.append((marker, waiter))
        return waiter.addTimeout(10, reactor)

    def send_json(self, body: dict) -> None:
        """Send one request."""
        self.transport.write(client_frame(json.dumps(body).encode()))

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames received so far."""
        return server_frames(self.received.split(b"\r\n\r\n", 1)[1])


class SlowConsumerTestsMixin:
    """One client stops reading while another sends to it."""

    async def test_client_that_stops_reading(self):
        """A client that stops reading is closed (1008) and dropped once the
        bytes waiting for it pass the cap; the daemon never holds much more than
        the cap for it; the sender and a third client are unaffected; and
        at the next login everything sent to the slow one comes as
        backlog."""
        await self.start(server={"max_buffered_bytes": CAP})
        alice, bob, carol = [await self.user(n) for n in ("alice", "bob", "carol")]
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        await bob.close()

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        raw = await endpoint.connect(protocol.Factory.forProtocol(RawClient))
        self.addCleanup(raw.transport.abortConnection)
        await raw.wait_for(b"\r\n\r\n")
        raw.send_json(
            {"action": "login", "username": "bob", "password": "correct horse"}
        )
        await raw.wait_for(b"offline_messages")
        (slow,) = self.service.registry.sessions_of(bob.user["id"])
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        raw.transport.pauseProducing()
        paused = True

        to_bob, to_carol, most_held = [], [], 0
        after = 0
        for n in range(MESSAGES):
            target, sent = (bob, to_bob) if n % 2 == 0 else (carol, to_carol)
            reply = await alice.call(
                "send_message", to_user=target.user["id"], content=CONTENT
            )
            sent.append(reply["message"]["id"])
            if slow._open:
                most_held = max(most_held, pending_bytes(slow.transport))
                continue
            if paused:
                # Read again, to see what arrived before the connection was
                # dropped (its close frame was queued behind the unread data).
                raw.transport.resumeProducing()
                paused = False
            after += 1
            if after == AFTER:
                break
        self.assertEqual(after, AFTER)
        await raw.lost.addTimeout(10, reactor)
        self.assertFalse(slow._open)
        self.assertEqual(slow.localCloseCode, 1008)
        self.assertNotIn(slow, self.service._factory.connections)
        self.assertNotIn(slow, self.service.registry.sessions_of(bob.user["id"]))
        self.assertLessEqual(most_held, CAP + 2 * len(CONTENT))
        self.assertGreater(most_held, CAP // 2)

        live = [
            json.loads(p)["data"]["message"]["id"]
            for op, p in raw.frames()
            if op == 1 and b'"event":"message"' in p.replace(b" ", b"")
        ]
        self.assertLess(len(live), len(to_bob))
        self.assertEqual(live, to_bob[: len(live)])

        events = [e["message"]["id"] for e in carol.pending_events("message")]
        while len(events) < len(to_carol):
            await carol.sync()
            events = [e["message"]["id"] for e in carol.pending_events("message")]
        self.assertEqual(events, to_carol)

        bob = await self.connect()
        await bob.call("login", username="bob", password="correct horse")
        backlog = []
        batch = await bob.next_event("offline_messages")
        backlog += batch["messages"]
        while batch["has_more"]:
            await bob.call("ack", up_to=batch["messages"][-1]["id"])
            batch = await bob.next_event("offline_messages")
            backlog += batch["messages"]
        self.assertEqual([m["id"] for m in backlog], to_bob)

    async def test_cap_zero_is_off(self):
        """With max_buffered_bytes = 0 nothing is measured and a client that
        reads slowly is never cut off for it."""
        await self.start(server={"max_buffered_bytes": 0})
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        for _ in range(20):
            await alice.call("send_message", to_user=bob.user["id"], content=CONTENT)
        for _ in range(20):
            await bob.next_event("message")
        await task.deferLater(reactor, 0, lambda: None)
        self.assertIsNone(bob.close_code)


class SqliteSlowConsumerTests(SlowConsumerTestsMixin, ChatTestCase):
    """Slow consumers on the SQLite store."""

    backend = "sqlite"


class PostgresSlowConsumerTests(SlowConsumerTestsMixin, ChatTestCase):
    """Slow consumers on the PostgreSQL store."""

    backend = "postgres"
