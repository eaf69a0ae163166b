"""Authorization, table-driven: every action that names an object (a user,
a group, a conversation, a friend request), tried by a stranger, a removed
friend and a former group member. Each attempt must fail with the expected
code, and no reply may carry any data of the object: the raw text of every
frame the attacker receives is searched for secrets planted in it."""

from tests.support import ChatTestCase

SECRET_GROUP_NAME = "GROUPNAME-7f3a9c"
SECRET_PRIVATE = "PRIVATE-1b2c8e"
SECRET_GROUP_MESSAGE = "GROUPMSG-9d8e4f"
SECRET_MEMBER = "Carol_5ecret71"
SECRET_MEMBER_NICK = "CAROLNICK-44aa"
SECRET_ADDRESSEE = "Dave_5ecret93"
SECRETS = (
    SECRET_GROUP_NAME,
    SECRET_PRIVATE,
    SECRET_GROUP_MESSAGE,
    SECRET_MEMBER,
    SECRET_MEMBER_NICK,
    SECRET_ADDRESSEE,
)

#: (action, parameters given the objects, expected code). ``user`` is a
#: user the attacker is not (or no longer) friends with; ``with`` the other
#: side of a private conversation the attacker is not part of.
TABLE = (
    ("send_message", lambda o: {"to_user": o["user"], "content": "hi"}, "not_friends"),
    ("get_history", lambda o: {"with_user": o["user"]}, "not_friends"),
    (
        "get_history",
        lambda o: {"with_user": o["user"], "before_id": o["last_private"] + 1},
        "not_friends",
    ),
    ("get_history", lambda o: {"with_user": o["with"]}, "not_friends"),
    ("remove_friend", lambda o: {"user_id": o["user"]}, "not_friends"),
    ("create_group", lambda o: {"name": "mine", "members": [o["user"]]}, "not_friends"),
    (
        "send_message",
        lambda o: {"group_id": o["group"], "content": "let me in"},
        "not_member",
    ),
    ("get_history", lambda o: {"group_id": o["group"]}, "not_member"),
    (
        "get_history",
        lambda o: {"group_id": o["group"], "before_id": o["last_group"] + 1},
        "not_member",
    ),
    ("get_group_members", lambda o: {"group_id": o["group"]}, "not_member"),
    ("leave_group", lambda o: {"group_id": o["group"]}, "not_member"),
    (
        "respond_friend_request",
        lambda o: {"request_id": o["request"], "accept": True},
        "not_found",
    ),
    (
        "respond_friend_request",
        lambda o: {"request_id": o["request"], "accept": False},
        "not_found",
    ),
)


class AuthorizationTestsMixin:
    """The table, on one backend."""

    async def _world(self):
        """Alice owns a group (with Bob, Carol and, formerly, Trent), talks
        privately with Bob, has a pending request to Dave, and once was
        Mallory's friend. Eve never met anyone. Everyone then goes offline
        but the attackers, so the online list shows no one's secrets."""
        alice, bob = await self.user("alice"), await self.user("bob")
        carol = await self.user(SECRET_MEMBER, nickname=SECRET_MEMBER_NICK)
        dave = await self.user(SECRET_ADDRESSEE)
        mallory, trent = await self.user("mallory"), await self.user("trent")
        await self.user("eve")
        for friend in (bob, carol, mallory, trent):
            await self.befriend(alice, friend)

        private = await alice.call(
            "send_message", to_user=bob.user["id"], content=SECRET_PRIVATE
        )
        await alice.call("send_message", to_user=mallory.user["id"], content="old")
        group = (
            await alice.call(
                "create_group",
                name=SECRET_GROUP_NAME,
                members=[bob.user["id"], carol.user["id"], trent.user["id"]],
            )
        )["group"]
        await trent.call("leave_group", group_id=group["id"])
        await alice.call("remove_friend", user_id=mallory.user["id"])
        sent = await carol.call(
            "send_message", group_id=group["id"], content=SECRET_GROUP_MESSAGE
        )
        request = (await alice.call("send_friend_request", username=SECRET_ADDRESSEE))[
            "request"
        ]
        for client in (alice, bob, carol, dave, mallory, trent):
            await client.close()
        return {
            "alice": alice.user["id"],
            "bob": bob.user["id"],
            "group": group["id"],
            "request": request["id"],
            "last_private": private["message"]["id"],
            "last_group": sent["message"]["id"],
        }

    async def _attacker(self, username: str):
        """Log in on a fresh connection, settle the login events and the
        backlog, and start recording every raw frame from then on."""
        client = await self.connect()
        raw: list[bytes] = []
        received = client._received

        def record(payload, is_binary):
            raw.append(payload)
            received(payload, is_binary)

        client._received = record
        await client.call("login", username=username, password="correct horse")
        backlog = await client.next_event("offline_messages")
        if backlog["messages"]:
            await client.call("ack", up_to=backlog["messages"][-1]["id"])
        await client.sync()
        raw.clear()
        client.raw = raw
        return client

    async def test_every_action_every_object(self):
        """Stranger, removed friend and former member: each action on each
        object fails with its code, and no secret is in any frame."""
        await self.start()
        world = await self._world()
        # Trent is still Alice's friend; his user targets are Bob's.
        personas = {
            "eve": {"user": world["alice"], "with": world["bob"]},
            "mallory": {"user": world["alice"], "with": world["bob"]},
            "trent": {"user": world["bob"], "with": world["bob"]},
        }
        tried = 0
        for name, targets in personas.items():
            objects = {**world, **targets}
            attacker = await self._attacker(name)
            for action, params, expected in TABLE:
                reply = await attacker.request(action, **params(objects))
                where = f"{name} {action} {params(objects)}"
                self.assertFalse(reply["ok"], where)
                self.assertEqual(reply["error"]["code"], expected, where)
                self.assertEqual(reply["action"], action, where)
                tried += 1

            # Asking Bob to be friends is allowed to anyone by design; the
            # reply names only the two people involved.
            asked = await attacker.call("send_friend_request", username="bob")
            self.assertEqual(asked["request"]["status"], "pending")
            await attacker.sync()

            text = b"\n".join(attacker.raw).decode("utf-8")
            for secret in SECRETS:
                self.assertNotIn(secret, text, f"{secret} leaked to {name}")
            await attacker.close()
        self.assertEqual(tried, 3 * len(TABLE))

    async def test_unknown_objects_are_not_found(self):
        """Ids that name nothing are not_found for every kind of object,
        so an attacker cannot tell a hidden object from a missing one by
        anything but the code the table above expects."""
        await self.start()
        await self.user("eve")
        eve = await self._attacker("eve")
        missing = 10**12
        for action, params in (
            ("send_message", {"to_user": missing, "content": "x"}),
            ("send_message", {"group_id": missing, "content": "x"}),
            ("get_history", {"with_user": missing}),
            ("get_history", {"group_id": missing}),
            ("get_group_members", {"group_id": missing}),
            ("leave_group", {"group_id": missing}),
            ("respond_friend_request", {"request_id": missing, "accept": True}),
            ("send_friend_request", {"username": "nobody-here"}),
        ):
            error = await eve.error(action, **params)
            self.assertEqual(error["code"], "not_found", action)


class SqliteAuthorizationTests(AuthorizationTestsMixin, ChatTestCase):
    """Authorization on the SQLite store."""

    backend = "sqlite"


class PostgresAuthorizationTests(AuthorizationTestsMixin, ChatTestCase):
    """Authorization on the PostgreSQL store."""

    backend = "postgres"
