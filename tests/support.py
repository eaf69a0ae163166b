"""Test helpers: configurations, fresh databases, a live server, a client.

PostgreSQL tests run when ``CHATD_TEST_POSTGRES`` holds a libpq DSN of a
server where the user may create databases; each test gets a database of
its own, created before and dropped after it.
"""

import itertools
import json
import os
import uuid
from dataclasses import replace

import psycopg2
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest

from chatd.config import Config
from chatd.storage.postgres import PostgresDatabase
from chatd.storage.sqlite import SqliteDatabase
from chatd.storage.store import Store
from chatd.tap import ChatService

POSTGRES_DSN = os.environ.get("CHATD_TEST_POSTGRES")
BACKENDS = ("sqlite", "postgres")
#: Seconds a test waits for a reply or an event before failing.
WAIT = 10.0


def create_postgres_database(testcase: unittest.TestCase) -> str:
    """Create a fresh database for one test, dropped at its end; return its
    DSN. Skips the test when CHATD_TEST_POSTGRES is not set."""
    if not POSTGRES_DSN:
        raise unittest.SkipTest("CHATD_TEST_POSTGRES is not set")
    name = f"chatd_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(POSTGRES_DSN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()

    def drop():
        connection = psycopg2.connect(POSTGRES_DSN)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()

    testcase.addCleanup(drop)
    return f"{POSTGRES_DSN} dbname={name}"


def test_config(testcase: unittest.TestCase, backend: str, **sections) -> Config:
    """A configuration for tests: loopback on port 0, cheap bcrypt, no
    Autobahn timers, a fresh database. ``sections`` maps a section name to
    a dict of overrides, e.g. ``security={"max_sessions_per_user": 2}``."""
    config = Config()
    server = dict(
        endpoint="tcp:0:interface=127.0.0.1",
        open_handshake_timeout=0.0,
        auto_ping_interval=0.0,
        auto_ping_timeout=0.0,
        close_handshake_timeout=0.0,
        auth_timeout=0.0,
    )
    server.update(sections.pop("server", {}))
    # No rate limit unless a test asks for one: tests send fast on purpose.
    security = dict(bcrypt_cost=4, rate_limit=0.0)
    security.update(sections.pop("security", {}))
    database = dict(backend=backend)
    if backend == "postgres":
        database["dsn"] = create_postgres_database(testcase)
    else:
        database["path"] = os.path.join(testcase.mktemp() + ".sqlite3")
    database.update(sections.pop("database", {}))
    presence = dict(online_users_interval=0.05)
    presence.update(sections.pop("presence", {}))

    config = replace(
        config,
        server=replace(config.server, **server),
        security=replace(config.security, **security),
        database=replace(config.database, **database),
        presence=replace(config.presence, **presence),
    )
    for name, values in sections.items():
        config = replace(config, **{name: replace(getattr(config, name), **values)})
    return config


def make_store(testcase: unittest.TestCase, backend: str) -> Store:
    """A store (not yet started) on a fresh database of the backend."""
    if backend == "postgres":
        dsn = create_postgres_database(testcase)
        return Store(PostgresDatabase(dsn, 2, 10.0, reactor))
    return Store(SqliteDatabase(testcase.mktemp() + ".sqlite3"))


async def start_server(testcase: unittest.TestCase, config: Config) -> ChatService:
    """Start the real chat service; it is stopped when the test ends."""
    service = ChatService(config, reactor)
    service.startService()
    await service.ready
    testcase.addCleanup(service.stopService)
    return service


class _ClientProtocol(WebSocketClientProtocol):
    """Feeds every frame to the ``ChatClient`` that owns the connection."""

    def onOpen(self):  # noqa: N802
        self.factory.chat_client._opened(self)

    def onMessage(self, payload, isBinary):  # noqa: N802
        self.factory.chat_client._received(payload, isBinary)

    def onClose(self, wasClean, code, reason):  # noqa: N802
        self.factory.chat_client._closed(code, reason)


class ChatClient:
    """A WebSocket client for tests that speaks chatd's protocol.

    Replies are matched to requests by id; events are kept in arrival order
    so that a test can wait for the next one of a name.
    """

    def __init__(self):
        self.protocol: _ClientProtocol | None = None
        self.frames: list[dict] = []
        self.events: list[dict] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed: defer.Deferred = defer.Deferred()
        self._open: defer.Deferred = defer.Deferred()
        self._ids = itertools.count(1)
        self._waiting: dict = {}
        self._event_waiters: list = []
        self._consumed = 0

    @classmethod
    async def connect(cls, port: int, path: str = "/ws", **headers) -> "ChatClient":
        """Open a connection to a local server."""
        client = cls()
        factory = WebSocketClientFactory(
            f"ws://127.0.0.1:{port}{path}", headers=headers or None
        )
        factory.protocol = _ClientProtocol
        factory.chat_client = client
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await endpoint.connect(factory)
        await client._open.addTimeout(WAIT, reactor)
        return client

    def _opened(self, protocol) -> None:
        self.protocol = protocol
        self._open.callback(self)

    def _received(self, payload: bytes, is_binary: bool) -> None:
        frame = json.loads(payload)
        self.frames.append(frame)
        if frame.get("type") == "reply":
            waiter = self._waiting.pop(frame.get("id"), None)
            if waiter is not None:
                waiter.callback(frame)
        else:
            self.events.append(frame)
            self._wake()

    def _closed(self, code, reason) -> None:
        self.close_code, self.close_reason = code, reason
        for waiter in list(self._waiting.values()):
            waiter.errback(ConnectionError(f"closed with {code}: {reason}"))
        self._waiting.clear()
        if not self._open.called:
            self._open.errback(ConnectionError(f"closed with {code}: {reason}"))
        if not self.closed.called:
            self.closed.callback((code, reason))
        self._wake()

    def send_raw(self, payload: bytes | str, binary: bool = False) -> None:
        """Send a frame exactly as given."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.protocol.sendMessage(payload, isBinary=binary)

    def request(self, action: str | None, **params) -> defer.Deferred:
        """Send a request with a fresh id now; the Deferred fires with the
        whole reply."""
        request_id = next(self._ids)
        body = dict(params, id=request_id)
        if action is not None:
            body["action"] = action
        waiter: defer.Deferred = defer.Deferred()
        self._waiting[request_id] = waiter
        self.send_raw(json.dumps(body))
        return waiter.addTimeout(WAIT, reactor)

    def raw_reply(self, payload: bytes | str, binary: bool = False) -> defer.Deferred:
        """Send a frame that may not decode now; the Deferred fires with the
        next reply whose id is null."""
        waiter: defer.Deferred = defer.Deferred()
        self._waiting[None] = waiter
        self.send_raw(payload, binary)
        return waiter.addTimeout(WAIT, reactor)

    async def call(self, action: str, **params) -> dict:
        """Send a request that must succeed and return its data."""
        reply = await self.request(action, **params)
        if not reply["ok"]:
            raise AssertionError(f"{action} failed: {reply['error']}")
        return reply["data"]

    async def error(self, action: str | None, **params) -> dict:
        """Send a request that must fail and return its error object."""
        reply = await self.request(action, **params)
        if reply["ok"]:
            raise AssertionError(f"{action} succeeded: {reply['data']}")
        return reply["error"]

    def _wake(self) -> None:
        waiters, self._event_waiters = self._event_waiters, []
        for check in waiters:
            check()

    async def next_event(self, name: str, timeout: float = WAIT) -> dict:
        """Wait for the next not yet taken event of this name; return its data."""
        result: defer.Deferred = defer.Deferred()

        def check():
            for frame in self.events:
                if frame.get("event") == name and not frame.get("_taken"):
                    frame["_taken"] = True
                    result.callback(frame["data"])
                    return
            if self.close_code is not None or self.protocol is None:
                result.errback(ConnectionError(f"closed while waiting for {name}"))
                return
            self._event_waiters.append(check)

        check()
        return await result.addTimeout(timeout, reactor)

    def pending_events(self, name: str) -> list[dict]:
        """The data of events of this name received and not yet taken."""
        return [
            f["data"]
            for f in self.events
            if f.get("event") == name and not f.get("_taken")
        ]

    async def sync(self) -> None:
        """Wait until the server has handled everything sent before."""
        await self.call("ping")

    async def close(self) -> None:
        """Close the connection cleanly and wait for it to end."""
        if self.close_code is None and self.protocol is not None:
            self.protocol.sendClose(1000)
        await self.closed.addTimeout(WAIT, reactor)


class ChatTestCase(unittest.TestCase):
    """Base for tests that talk to a live server over real sockets."""

    backend = "sqlite"
    sections: dict = {}

    async def start(self, **sections) -> ChatService:
        """Start a server with the test configuration plus overrides."""
        merged = {**self.sections, **sections}
        self.service = await start_server(
            self, test_config(self, self.backend, **merged)
        )
        self.port = self.service.port.getHost().port
        return self.service

    async def connect(self, **headers) -> ChatClient:
        """Open a client connection that is closed at the end of the test."""
        client = await ChatClient.connect(self.port, **headers)
        self.addCleanup(_close_quietly, client)
        return client

    async def user(self, username: str, password: str = "correct horse", **extra):
        """Register a user on a new connection and take the login events."""
        client = await self.connect()
        data = await client.call(
            "register", username=username, password=password, **extra
        )
        client.user = data["user"]
        client.token = data["session_token"]
        client.login_events = {
            name: await client.next_event(name)
            for name in ("friends", "groups", "offline_messages")
        }
        return client

    async def befriend(self, a: ChatClient, b: ChatClient) -> None:
        """Make two registered clients friends."""
        request = await a.call("send_friend_request", username=b.user["username"])
        await b.call(
            "respond_friend_request", request_id=request["request"]["id"], accept=True
        )
        await a.next_event("friend_added")
        await b.next_event("friend_added")


async def _close_quietly(client: ChatClient) -> None:
    try:
        await client.close()
    except Exception:
        pass
