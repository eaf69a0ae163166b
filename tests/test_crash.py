"""The real daemon, killed and stopped: SIGKILL mid-stream and SIGTERM.

Each test runs ``twistd -n chatd`` as a child process (tests/daemon.py),
talks to it over real sockets and then signals it. They run on SQLite and,
when CHATD_TEST_POSTGRES is set, on PostgreSQL.
"""

import os
import signal

from twisted.internet import defer, reactor, task

from tests.daemon import Daemon
from tests.support import ChatClient, ChatTestCase, create_postgres_database


async def sleep(seconds: float) -> None:
    """Let the reactor run for a while."""
    await task.deferLater(reactor, seconds, lambda: None)


#: Messages each sender means to send, and acknowledged ones before the kill.
PER_SENDER = 80
KILL_AFTER = 100
SENDERS = ("sam", "sue", "sid")
WORKERS_PER_SENDER = 4


def _ini(database: dict, **sections) -> str:
    """The text of a chatd.ini for the child daemon (``{port}`` is filled
    in by ``Daemon``)."""
    values = {
        "server": {
            "endpoint": "tcp:{port}:interface=127.0.0.1",
            "open_handshake_timeout": "0",
            "auto_ping_interval": "0",
            "close_handshake_timeout": "1",
            "auth_timeout": "0",
        },
        "security": {"bcrypt_cost": "4", "rate_limit": "0"},
        "database": database,
    }
    for name, options in sections.items():
        values.setdefault(name, {}).update(options)
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
        for name, options in values.items()
    )


class _DaemonTestCase(ChatTestCase):
    """Runs the child daemon; ``self.port`` is its port."""

    def database_options(self) -> dict:
        """The [database] options of a fresh database for this test."""
        if self.backend == "postgres":
            return {"backend": "postgres", "dsn": create_postgres_database(self)}
        return {"backend": "sqlite", "path": os.path.abspath(self.mktemp())}

    async def start_daemon(self, **sections) -> Daemon:
        """Start a daemon on a fresh database of the class's backend."""
        folder = self.mktemp()
        os.makedirs(folder)
        self.daemon = Daemon(folder, _ini(self.database_options(), **sections))
        self.addCleanup(self.daemon.kill, signal.SIGKILL)
        self.daemon.start()
        await self.daemon.ready()
        self.port = self.daemon.port
        return self.daemon

    async def restart_daemon(self) -> None:
        """Start the daemon again on the same database and port."""
        self.daemon.start()
        await self.daemon.ready()

    async def login(self, username: str) -> ChatClient:
        """Log an existing user in on a new connection."""
        client = await self.connect()
        data = await client.call("login", username=username, password="correct horse")
        client.user = data["user"]
        return client


def _content(sender: str, n: int) -> str:
    return f"{sender} says {n}"


class CrashTestsMixin:
    """SIGKILL while several clients send: nothing acknowledged is lost."""

    async def _send_worker(self, client, sender, numbers, target, acked, doubt):
        """Send messages one after another until the connection dies."""
        for n in numbers:
            client_msg_id = f"{sender}-{n}"
            try:
                reply = await client.request(
                    "send_message",
                    content=_content(sender, n),
                    client_msg_id=client_msg_id,
                    **target(n),
                )
            except (ConnectionError, defer.TimeoutError):
                doubt.add(client_msg_id)
                return
            self.assertTrue(reply["ok"], reply)
            acked[client_msg_id] = reply["data"]["message"]["id"]

    async def test_sigkill_mid_stream(self):
        """Kill -9 the daemon while three clients send; after a restart,
        every acknowledged message is stored once, in id order, retries of
        every client_msg_id return the stored message, and the offline
        recipient gets them all as backlog."""
        await self.start_daemon()
        reader = await self.user("rita")
        senders = [await self.user(name) for name in SENDERS]
        for sender in senders:
            await self.befriend(sender, reader)
        for other in senders[1:]:
            await self.befriend(senders[0], other)
        group = await senders[0].call(
            "create_group",
            name="crew",
            members=[reader.user["id"]] + [s.user["id"] for s in senders[1:]],
        )
        group_id = group["group"]["id"]
        reader_id = reader.user["id"]
        await reader.close()

        def target(n: int) -> dict:
            if n % 2:
                return {"group_id": group_id}
            return {"to_user": reader_id}

        acked: dict[str, int] = {}
        doubt: set[str] = set()
        workers = [
            defer.Deferred.fromCoroutine(
                self._send_worker(
                    client,
                    name,
                    range(w, PER_SENDER, WORKERS_PER_SENDER),
                    target,
                    acked,
                    doubt,
                )
            )
            for client, name in zip(senders, SENDERS, strict=True)
            for w in range(WORKERS_PER_SENDER)
        ]
        while len(acked) < KILL_AFTER:
            await sleep(0.001)
        self.daemon.kill(signal.SIGKILL)
        await defer.gatherResults(workers)
        self.assertEqual(await self.daemon.exited(5), -signal.SIGKILL)
        for client in senders:
            await client.closed
        self.assertGreaterEqual(len(acked), KILL_AFTER)
        self.assertLess(len(acked), len(SENDERS) * PER_SENDER)
        before_restart = dict(acked)

        await self.restart_daemon()
        stored: dict[str, int] = {}
        for name in SENDERS:
            client = await self.login(name)
            replies = [
                client.request(
                    "send_message",
                    content=_content(name, n),
                    client_msg_id=f"{name}-{n}",
                    **target(n),
                )
                for n in range(PER_SENDER)
            ]
            for n, waiter in enumerate(replies):
                reply = await waiter
                self.assertTrue(reply["ok"], reply)
                stored[f"{name}-{n}"] = reply["data"]["message"]["id"]
        for client_msg_id, message_id in before_restart.items():
            self.assertEqual(stored[client_msg_id], message_id, client_msg_id)
        self.assertEqual(len(set(stored.values())), len(stored))

        reader = await self.login("rita")
        received = []
        batch = await reader.next_event("offline_messages")
        received += batch["messages"]
        while batch["has_more"]:
            await reader.call("ack", up_to=batch["messages"][-1]["id"])
            batch = await reader.next_event("offline_messages")
            received += batch["messages"]
        ids = [m["id"] for m in received]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(sorted(m["client_msg_id"] for m in received), sorted(stored))
        for message in received:
            self.assertEqual(message["id"], stored[message["client_msg_id"]])

        history = await self._whole_history(reader, group_id=group_id)
        history += sum(
            [
                await self._whole_history(reader, with_user=s.user["id"])
                for s in senders
            ],
            [],
        )
        self.assertEqual(sorted(m["id"] for m in history), ids)

    async def _whole_history(self, client, **conversation) -> list[dict]:
        """Page back through a conversation; check each page is in order."""
        messages, before = [], None
        while True:
            params = dict(conversation, limit=50)
            if before is not None:
                params["before_id"] = before
            page = await client.call("get_history", **params)
            ids = [m["id"] for m in page["messages"]]
            self.assertEqual(ids, sorted(set(ids)))
            messages = page["messages"] + messages
            if not page["has_more"]:
                break
            before = ids[0]
        ids = [m["id"] for m in messages]
        self.assertEqual(ids, sorted(set(ids)))
        return messages


class ShutdownTestsMixin:
    """SIGTERM: in-flight requests answered, sessions closed with 1001."""

    async def test_sigterm_with_request_in_flight(self):
        """SIGTERM while a register (slow bcrypt) is in flight and more
        requests wait behind it: the register is answered, the waiting ones
        get a reply too (ok or unavailable), every client is closed with
        1001, and the process exits 0 within the shutdown timeout."""
        await self.start_daemon(
            security={"bcrypt_cost": "12"}, server={"shutdown_timeout": "4"}
        )
        idle = await self.connect()
        await idle.sync()
        busy = await self.connect()
        register = busy.request("register", username="late", password="correct horse")
        waiting = [busy.request("ping") for _ in range(3)]
        await sleep(0.05)

        started = reactor.seconds()
        self.daemon.kill(signal.SIGTERM)
        reply = await register
        self.assertTrue(reply["ok"], reply)
        for waiter in waiting:
            answer = await waiter
            if not answer["ok"]:
                self.assertEqual(answer["error"]["code"], "unavailable")
        for client in (idle, busy):
            code, _ = await client.closed
            self.assertEqual(code, 1001)
        self.assertEqual(await self.daemon.exited(6), 0)
        self.assertLess(reactor.seconds() - started, 4 + 1)
        self.assertIn("chatd stopped", self.daemon.log())


class SqliteCrashTests(CrashTestsMixin, ShutdownTestsMixin, _DaemonTestCase):
    """The daemon on SQLite, killed and stopped."""

    backend = "sqlite"


class PostgresCrashTests(CrashTestsMixin, ShutdownTestsMixin, _DaemonTestCase):
    """The daemon on PostgreSQL, killed and stopped."""

    backend = "postgres"
