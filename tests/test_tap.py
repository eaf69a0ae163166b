"""The twistd plugin and the real daemon process, start to finish."""

import os
import signal
import socket

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial import unittest

from chatd import tap
from chatd.config import Config
from tests.daemon import Daemon, run_twistd
from tests.support import ChatClient, create_postgres_database

_INI = """
[server]
endpoint = tcp:{port}:interface=127.0.0.1
[security]
bcrypt_cost = 4
"""


class PluginTests(unittest.TestCase):
    """``twistd chatd`` finds the plugin and reads its options."""

    def test_plugin_is_discovered(self):
        """The installed dropin offers a service maker named chatd."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("chatd", makers)
        self.assertEqual(makers["chatd"].module, "chatd.tap")

    def test_no_config_means_defaults(self):
        """Without --config the options carry the built-in defaults."""
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options["parsed"], Config())

    def test_bcrypt_threads_leave_a_core(self):
        """0 means one fewer than the cores, never below one; a configured
        number is kept."""
        self.patch(os, "cpu_count", lambda: 2)
        self.assertEqual(tap.bcrypt_threads(0), 1)
        self.patch(os, "cpu_count", lambda: 8)
        self.assertEqual(tap.bcrypt_threads(0), 7)
        self.patch(os, "cpu_count", lambda: None)
        self.assertEqual(tap.bcrypt_threads(0), 1)
        self.assertEqual(tap.bcrypt_threads(3), 3)

    def test_bad_config_is_a_usage_error(self):
        """A wrong value stops option parsing with one line naming
        section.key (and no usage summary)."""
        path = self.mktemp()
        with open(path, "w") as ini:
            ini.write("[security]\nbcrypt_cost = lots\n")
        options = tap.Options()
        with self.assertRaises(SystemExit) as caught:
            options.parseOptions(["--config", path])
        self.assertIn("security.bcrypt_cost", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))


class DaemonProcessTests(unittest.TestCase):
    """The daemon as users run it: a twistd process, a config file."""

    def folder(self) -> str:
        import os

        path = self.mktemp()
        os.makedirs(path)
        return path

    def test_unknown_key_exits_nonzero_with_one_line(self):
        """An unknown key stops start-up: non-zero status, one line that
        names section and key."""
        folder = self.folder()
        with open(f"{folder}/bad.ini", "w") as ini:
            ini.write("[server]\nendpoint = tcp:0\nlisten_backlog = 5\n")
        result = run_twistd(folder, "--config", "bad.ini")
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        lines = [
            line for line in output.splitlines() if "server.listen_backlog" in line
        ]
        self.assertEqual(len(lines), 1, output)
        self.assertIn("unknown option", lines[0])
        self.assertEqual(output.strip().splitlines(), lines, "only that line")

    def test_bad_endpoint_exits_nonzero_with_one_line(self):
        """An endpoint string Twisted cannot read stops start-up with one
        line naming server.endpoint, before any database is opened."""
        for endpoint in ("tpc:8766", "tcp:8767:interfac=127.0.0.1"):
            folder = self.folder()
            with open(f"{folder}/bad.ini", "w") as ini:
                ini.write(f"[server]\nendpoint = {endpoint}\n")
            result = run_twistd(folder, "--config", "bad.ini")
            self.assertNotEqual(result.returncode, 0)
            lines = (result.stdout + result.stderr).strip().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("server.endpoint", lines[0])
            self.assertFalse(os.path.exists(f"{folder}/chatd.sqlite3"))

    async def test_unreachable_database_exits_nonzero(self):
        """A PostgreSQL that cannot be reached stops the daemon with one
        critical line and a non-zero status."""
        daemon = Daemon(
            self.folder(),
            _INI + "[database]\nbackend = postgres\n"
            "dsn = host=127.0.0.1 port=1 user=postgres connect_timeout=2\n",
        )
        daemon.start()
        self.addCleanup(daemon.stop)
        status = await daemon.exited()
        self.assertNotEqual(status, 0)
        self.assertIn("cannot start: database unavailable", daemon.log())

    async def test_port_in_use_exits_nonzero_with_one_line(self):
        """A listening address that is taken stops the daemon with one
        critical line naming the endpoint, and a non-zero status."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            daemon = Daemon(
                self.folder(),
                f"[server]\nendpoint = tcp:{port}:interface=127.0.0.1\n",
            )
            daemon.start()
            self.addCleanup(daemon.stop)
            status = await daemon.exited()
        self.assertNotEqual(status, 0)
        lines = [line for line in daemon.log().splitlines() if "cannot start" in line]
        self.assertEqual(len(lines), 1)
        self.assertIn(f"cannot listen on tcp:{port}", lines[0])
        self.assertNotIn("Traceback", daemon.log())

    async def chat_through_daemon(self, ini: str) -> None:
        """Register, befriend, chat privately and in a group, go offline and
        come back to the backlog, then SIGTERM: all through the process."""
        daemon = Daemon(self.folder(), ini)
        daemon.start()
        self.addCleanup(daemon.stop)
        await daemon.ready()

        clients = {}
        for name in ("alice", "bob", "carol"):
            client = await ChatClient.connect(daemon.port)
            data = await client.call("register", username=name, password="long enough")
            client.user = data["user"]
            clients[name] = client
        alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
        for friend in (bob, carol):
            request = await alice.call(
                "send_friend_request", username=friend.user["username"]
            )
            await friend.call(
                "respond_friend_request",
                request_id=request["request"]["id"],
                accept=True,
            )

        await alice.call("send_message", to_user=bob.user["id"], content="private")
        self.assertEqual(
            (await bob.next_event("message"))["message"]["content"], "private"
        )
        group = await alice.call(
            "create_group", name="all", members=[bob.user["id"], carol.user["id"]]
        )
        group_id = group["group"]["id"]
        await carol.call("send_message", group_id=group_id, content="group hello")
        for member in (alice, bob):
            event = await member.next_event("message")
            self.assertEqual(event["message"]["content"], "group hello")

        await bob.close()
        await alice.call("send_message", to_user=bob.user["id"], content="missed 1")
        await carol.call("send_message", group_id=group_id, content="missed 2")
        bob = await ChatClient.connect(daemon.port)
        await bob.call("login", username="bob", password="long enough")
        backlog = await bob.next_event("offline_messages")
        contents = [m["content"] for m in backlog["messages"]]
        self.assertEqual(contents, ["private", "group hello", "missed 1", "missed 2"])

        daemon.kill(signal.SIGTERM)
        for client in (alice, bob, carol):
            code, _ = await client.closed
            self.assertEqual(code, 1001)
        # An orderly shutdown exits 0 (twistd would re-raise the SIGTERM).
        self.assertEqual(await daemon.exited(), 0)
        self.assertIn("chatd stopped", daemon.log())
        self.assertIn("Autobahn NVX acceleration is on", daemon.log())

    async def test_chat_on_sqlite(self):
        """The whole user journey on the embedded SQLite default."""
        await self.chat_through_daemon(_INI)

    async def test_chat_on_postgres(self):
        """The whole user journey on PostgreSQL."""
        dsn = create_postgres_database(self)
        await self.chat_through_daemon(
            _INI + f"[database]\nbackend = postgres\ndsn = {dsn}\n"
        )
