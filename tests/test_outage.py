"""Database outage: PostgreSQL stops under a running daemon and comes back.

The test runs a private PostgreSQL cluster of its own (initdb into a
temporary folder, on a free loopback port) so that stopping it disturbs
nobody; it is skipped when the PostgreSQL server binaries are missing.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from twisted.internet import reactor, task, threads
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from tests.daemon import free_port
from tests.support import ChatTestCase

#: [database] timeout for the daemon in this test, in seconds.
TIMEOUT = 2.0


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster run as the ``postgres`` user.

    Raises:
        unittest.SkipTest: when initdb or the postgres user is missing.
    """

    def __init__(self):
        self.bin = _binaries()
        if self.bin is None:
            raise unittest.SkipTest("PostgreSQL server binaries (initdb) not found")
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise unittest.SkipTest("no postgres user to run PostgreSQL as") from None
        self.folder = tempfile.mkdtemp(prefix="chatd-pg-")
        os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        self._as_postgres(
            "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def _as_postgres(self, tool: str, *args: str) -> None:
        command = [os.path.join(self.bin, tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            " -c fsync=off"
        )
        log = os.path.join(self.folder, "server.log")
        self._as_postgres(
            "pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        """Stop the server the hard way (like a crash or a kill -9)."""
        self._as_postgres("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class DatabaseOutageTests(ChatTestCase):
    """A daemon on a PostgreSQL server that goes away and comes back."""

    # The private cluster replaces the shared one: no CHATD_TEST_POSTGRES.
    backend = "sqlite"

    async def health(self) -> int:
        """GET /healthz on the running server; its status code."""
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{self.port}/healthz".encode()
        response = await agent.request(b"GET", url)
        await readBody(response)
        return response.code

    async def timed_error(self, client, action: str, **params) -> dict:
        """Send a request that must fail; check it fails within the timeout."""
        started = reactor.seconds()
        reply = await client.request(action, **params)
        self.assertLess(reactor.seconds() - started, TIMEOUT + 0.5, action)
        self.assertFalse(reply["ok"], reply)
        return reply["error"]

    async def test_postgres_stops_and_returns(self):
        """With PostgreSQL stopped, every request that needs it is answered
        unavailable within the configured timeout and /healthz says 503;
        once it is back the same daemon serves again by itself (200), and
        every message acknowledged before, during or after is there."""
        cluster = PrivatePostgres()
        self.addCleanup(cluster.remove)
        await threads.deferToThread(cluster.start)
        await self.start(
            database={
                "backend": "postgres",
                "dsn": cluster.dsn,
                "timeout": TIMEOUT,
                "pool_size": 2,
            }
        )
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        acked = []
        for n in range(5):
            sent = await alice.call(
                "send_message", to_user=bob.user["id"], content=f"before {n}"
            )
            acked.append(sent["message"]["id"])
        await bob.close()
        self.assertEqual(await self.health(), 200)

        await threads.deferToThread(cluster.stop)
        for n in range(3):
            error = await self.timed_error(
                alice, "send_message", to_user=bob.user["id"], content=f"lost {n}"
            )
            self.assertEqual(error["code"], "unavailable")
        for action, params in (
            ("get_history", {"with_user": bob.user["id"]}),
            ("get_friends", {}),
            ("ack", {"up_to": acked[-1]}),
        ):
            error = await self.timed_error(alice, action, **params)
            self.assertEqual(error["code"], "unavailable", action)
        visitor = await self.connect()
        error = await self.timed_error(
            visitor, "login", username="bob", password="correct horse"
        )
        self.assertEqual(error["code"], "unavailable")
        self.assertEqual(await self.health(), 503)
        await alice.sync()

        await threads.deferToThread(cluster.start)
        back_at = reactor.seconds()
        while await self.health() != 200:
            self.assertLess(reactor.seconds() - back_at, 15, "no recovery")
            await task.deferLater(reactor, 0.1, lambda: None)
        for n in range(3):
            reply = await alice.request(
                "send_message", to_user=bob.user["id"], content=f"after {n}"
            )
            # A pooled connection may learn only now that it died: one
            # unavailable reply per connection at most, then service.
            if reply["ok"]:
                acked.append(reply["data"]["message"]["id"])
            else:
                self.assertEqual(reply["error"]["code"], "unavailable")
        while len(acked) < 5 + 3:
            sent = await alice.call(
                "send_message", to_user=bob.user["id"], content="after, again"
            )
            acked.append(sent["message"]["id"])

        bob = await self.connect()
        await bob.call("login", username="bob", password="correct horse")
        backlog = await bob.next_event("offline_messages")
        self.assertEqual([m["id"] for m in backlog["messages"]], acked)
        self.assertFalse(
            [m for m in backlog["messages"] if m["content"].startswith("lost")]
        )
