"""Dead peers: a client that vanishes without a close is found by ping.

The client talks to the daemon through a small TCP proxy of the test's own;
"cutting the cable" makes the proxy swallow every byte both ways while
keeping both connections open, as a network cut or a closed laptop does.
"""

from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from tests.support import ChatClient, ChatTestCase

PING_INTERVAL = 1.0
PING_TIMEOUT = 1.0


class _Half(protocol.Protocol):
    """One side of a proxied connection; forwards to its peer unless cut."""

    def __init__(self, proxy: "CuttableProxy"):
        self.proxy = proxy
        self.peer: _Half | None = None
        self.early: list[bytes] = []

    def connectionMade(self):  # noqa: N802
        """Remember the connection so that the test can end it."""
        self.proxy.halves.add(self)

    def dataReceived(self, data):  # noqa: N802
        """Forward, unless the cable is cut."""
        if self.proxy.cut:
            return
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)

    def connectionLost(self, reason):  # noqa: N802
        """Pass a real close on, unless the cable is cut."""
        self.proxy.halves.discard(self)
        if self.peer is not None and not self.proxy.cut:
            self.peer.transport.loseConnection()


class CuttableProxy(protocol.Factory):
    """Accept on loopback and connect each client to ``target_port``."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.cut = False
        self.halves: set[_Half] = set()

    def buildProtocol(self, addr):  # noqa: N802
        """Make the client side and start connecting the server side."""
        client_side = _Half(self)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.target_port)
        server_factory = protocol.Factory()
        server_factory.buildProtocol = lambda _: _Half(self)
        connecting = endpoint.connect(server_factory)

        def connected(server_side):
            server_side.peer, client_side.peer = client_side, server_side
            for data in client_side.early:
                server_side.transport.write(data)
            client_side.early = []

        connecting.addCallback(connected)
        return client_side

    def abort_all(self) -> None:
        """Drop every connection through the proxy."""
        self.cut = True
        for half in list(self.halves):
            half.transport.abortConnection()


class DeadPeerTestsMixin:
    """A connection cut without a close."""

    async def test_vanished_client_found_by_ping(self):
        """After the cable is cut, the daemon's ping goes unanswered; within
        the ping interval plus timeout (plus the 1 s granularity of
        Autobahn's timers) the session ends and the user's friend sees them
        go offline; the friend's own connection is unharmed."""
        await self.start(
            server={
                "auto_ping_interval": PING_INTERVAL,
                "auto_ping_timeout": PING_TIMEOUT,
            }
        )
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        await bob.close()
        await alice.next_event("presence")

        proxy = CuttableProxy(self.port)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening = await endpoint.listen(proxy)
        self.addCleanup(listening.stopListening)
        bob_id = bob.user["id"]
        bob = await ChatClient.connect(listening.getHost().port)
        self.addCleanup(proxy.abort_all)
        await bob.call("login", username="bob", password="correct horse")
        online = await alice.next_event("presence")
        self.assertEqual(online, {"user_id": bob_id, "online": True})

        proxy.cut = True
        cut_at = reactor.seconds()
        offline = await alice.next_event("presence", timeout=10)
        elapsed = reactor.seconds() - cut_at
        self.assertEqual(offline, {"user_id": bob_id, "online": False})
        self.assertLess(elapsed, PING_INTERVAL + PING_TIMEOUT + 2.0)
        self.assertFalse(self.service.registry.is_online(bob_id))
        self.assertIsNone(bob.close_code)
        await alice.sync()


class SqliteDeadPeerTests(DeadPeerTestsMixin, ChatTestCase):
    """Dead peers on the SQLite store."""

    backend = "sqlite"


class PostgresDeadPeerTests(DeadPeerTestsMixin, ChatTestCase):
    """Dead peers on the PostgreSQL store."""

    backend = "postgres"
