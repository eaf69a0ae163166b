"""Usernames compared after NFKC and case folding, so two accounts cannot
look the same; and every SQL statement in the store is parameterized."""

import ast
import inspect

from twisted.internet import defer
from twisted.trial import unittest

from chatd.services.text import username_key
from chatd.storage import sql, store, writes
from tests.support import ChatTestCase

LOOK_ALIKES = (
    "ALICE",
    "Alice",
    "aLiCe",
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth "alice"
    "\uff21\uff2c\uff29\uff23\uff25",  # fullwidth "ALICE"
    "al\u0131ce",  # dotless i
    "alic\u0435",  # Cyrillic e
    "a\u200blice",  # zero-width space
    "alice\u0301",  # combining accent
    "\u24d0lice",  # circled a
)


class UsernameKeyTests(unittest.TestCase):
    """The compared form of a username."""

    def test_case_and_width_fold_together(self):
        """Case and fullwidth forms reduce to one key."""
        for name in ("alice", "ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45"):
            self.assertEqual(username_key(name), "alice", repr(name))
        self.assertEqual(username_key("\u212aelvin"), "kelvin")  # Kelvin sign


class LookAlikeTestsMixin:
    """Look-alike usernames on a live server."""

    async def test_look_alikes_cannot_register(self):
        """Every look-alike of an existing username is refused: the ASCII
        ones as username_taken, the others as bad_request (usernames are
        ASCII letters, digits, '_', '.', '-')."""
        await self.start()
        await self.user("alice")
        client = await self.connect()
        for name in LOOK_ALIKES:
            error = await client.error("register", username=name, password="12345678")
            expected = "username_taken" if name.isascii() else "bad_request"
            self.assertEqual(error["code"], expected, repr(name))
            if expected == "bad_request":
                self.assertEqual(error["field"], "username")

    async def test_look_alike_login_reaches_the_one_account(self):
        """Logging in or befriending by a case or width variant reaches the
        one existing account, never a second one."""
        await self.start()
        alice = await self.user("alice")
        bob = await self.user("bob")
        client = await self.connect()
        data = await client.call(
            "login",
            username="\uff21\uff2c\uff29\uff23\uff25",
            password="correct horse",
        )
        self.assertEqual(data["user"]["id"], alice.user["id"])
        self.assertEqual(data["user"]["username"], "alice")
        request = await bob.call("send_friend_request", username="aLICE")
        self.assertEqual(request["request"]["to"]["id"], alice.user["id"])

    async def test_concurrent_look_alike_registrations(self):
        """Two registrations that differ only in case, racing on two
        connections, create exactly one account."""
        await self.start()
        first, second = await self.connect(), await self.connect()
        replies = await defer.gatherResults(
            [
                first.request("register", username="carol", password="12345678"),
                second.request("register", username="CAROL", password="12345678"),
            ]
        )
        self.assertEqual(sorted(r["ok"] for r in replies), [False, True])
        refused = next(r for r in replies if not r["ok"])
        self.assertEqual(refused["error"]["code"], "username_taken")


class SqliteLookAlikeTests(LookAlikeTestsMixin, ChatTestCase):
    """Look-alikes on SQLite."""

    backend = "sqlite"


class PostgresLookAlikeTests(LookAlikeTestsMixin, ChatTestCase):
    """Look-alikes on PostgreSQL."""

    backend = "postgres"


#: What an f-string in chatd's storage modules may interpolate: the column
#: lists and the placeholder builder. Values never reach SQL text.
_COLUMN_LISTS = {"USER", "MESSAGE", "MESSAGE_FROM", "REQUEST", "GROUP"}
#: Functions whose f-strings build values (conversation keys), not SQL.
_VALUE_BUILDERS = {"private_conversation", "group_conversation"}


class SqlParameterizedTests(unittest.TestCase):
    """SQL is built only from constants and placeholders."""

    def test_storage_interpolates_only_columns_and_placeholders(self):
        """Every f-string in the storage modules interpolates a column list
        or a ``marks`` placeholder list (or builds a conversation key
        value); nothing is formatted with ``.format`` or ``%``."""
        checked = 0
        for module in (store, writes, sql):
            tree = ast.parse(inspect.getsource(module))
            value_nodes = set()
            for function in ast.walk(tree):
                if isinstance(function, ast.FunctionDef) and function.name in (
                    _VALUE_BUILDERS
                ):
                    value_nodes |= {id(n) for n in ast.walk(function)}

            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr) and id(node) not in value_nodes:
                    for part in node.values:
                        if not isinstance(part, ast.FormattedValue):
                            continue
                        value = part.value
                        ok = (
                            isinstance(value, ast.Name) and value.id in _COLUMN_LISTS
                        ) or (
                            isinstance(value, ast.Call)
                            and isinstance(value.func, ast.Name)
                            and value.func.id == "marks"
                        )
                        where = f"{module.__name__} line {node.lineno}"
                        self.assertTrue(ok, f"{where}: {ast.unparse(value)}")
                        checked += 1
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    self.assertNotEqual(node.func.attr, "format", module.__name__)
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                    self.fail(f"{module.__name__} line {node.lineno}: % formatting")
        self.assertGreater(checked, 20)
