"""One store test suite, run against SQLite and PostgreSQL alike."""

from twisted.trial import unittest

from chatd.storage.records import NewMessage
from chatd.storage.sql import private_conversation
from tests.support import make_store

NOW = 1_780_000_000_000


class StoreTestsMixin:
    """The store's domain operations, backend-independent."""

    backend: str

    async def setUp(self):
        self.store = make_store(self, self.backend)
        await self.store.start(NOW)
        self.addCleanup(self.store.close)

    async def make_users(self, *names):
        users = []
        for name in names:
            user = await self.store.create_user(name, name.lower(), name, b"hash", NOW)
            users.append(user)
        return users

    async def make_friends(self, a, b):
        outcome, request = await self.store.open_friend_request(a.id, b.id, NOW)
        self.assertEqual(outcome, "created")
        outcome, _ = await self.store.answer_friend_request(request.id, b.id, True, NOW)
        self.assertEqual(outcome, "ok")

    def private(self, sender, to, content="hi", client_msg_id=None):
        return NewMessage(sender.id, to.id, None, content, NOW, client_msg_id)

    def grouped(self, sender, group, content="hi", client_msg_id=None):
        return NewMessage(sender.id, None, group.id, content, NOW, client_msg_id)

    async def test_migrations_are_recorded_once(self):
        """A second start on the same database applies nothing again."""
        self.assertTrue(await self.store.ping())
        (alice,) = await self.make_users("alice")
        backend = self.store._db
        await self.store.close()
        await self.store.start(NOW)
        self.assertIs(self.store._db, backend)
        self.assertEqual(await backend.run("versions", _schema_versions), [1, 2])
        self.assertEqual((await self.store.user_by_id(alice.id)).username, "alice")

    async def test_create_user_and_unique_key(self):
        """A username key can be taken once; look-ups by key and id work."""
        (alice,) = await self.make_users("Alice")
        self.assertEqual((alice.username, alice.nickname), ("Alice", "Alice"))
        self.assertEqual(alice.delivered_up_to, 0)
        taken = await self.store.create_user("ALICE", "alice", "x", b"h", NOW)
        self.assertIsNone(taken)
        self.assertEqual((await self.store.user_by_key("alice")).id, alice.id)
        self.assertEqual((await self.store.user_by_id(alice.id)).username, "Alice")
        self.assertIsNone(await self.store.user_by_id(alice.id + 100))
        self.assertEqual(await self.store.users_by_ids([]), {})

    async def test_password_hash_round_trips_as_bytes(self):
        """The stored hash comes back as the same bytes."""
        user = await self.store.create_user("bob", "bob", "bob", b"\x00\xffhash", NOW)
        self.assertEqual(
            (await self.store.user_by_id(user.id)).password_hash, b"\x00\xffhash"
        )

    async def test_sessions_expire_and_revoke(self):
        """A token finds its user until it expires or is deleted."""
        (alice,) = await self.make_users("alice")
        await self.store.create_session(b"t1", alice.id, NOW, NOW + 1000)
        self.assertEqual((await self.store.user_for_session(b"t1", NOW)).id, alice.id)
        self.assertIsNone(await self.store.user_for_session(b"t1", NOW + 1000))
        self.assertIsNone(await self.store.user_for_session(b"nope", NOW))
        await self.store.create_session(b"t2", alice.id, NOW, NOW + 1000)
        await self.store.delete_session(b"t2")
        self.assertIsNone(await self.store.user_for_session(b"t2", NOW))

    async def test_set_password_revokes_other_sessions(self):
        """Changing the hash keeps only the session named."""
        (alice,) = await self.make_users("alice")
        for token in (b"keep", b"drop1", b"drop2"):
            await self.store.create_session(token, alice.id, NOW, NOW + 10_000)
        await self.store.set_password(alice.id, b"new", b"keep")
        self.assertIsNotNone(await self.store.user_for_session(b"keep", NOW))
        self.assertIsNone(await self.store.user_for_session(b"drop1", NOW))
        self.assertEqual((await self.store.user_by_id(alice.id)).password_hash, b"new")

    async def test_friend_request_outcomes(self):
        """Created, repeated, crossed (accepted), already friends."""
        alice, bob = await self.make_users("alice", "bob")
        outcome, first = await self.store.open_friend_request(alice.id, bob.id, NOW)
        self.assertEqual((outcome, first.status), ("created", "pending"))
        outcome, same = await self.store.open_friend_request(alice.id, bob.id, NOW)
        self.assertEqual((outcome, same.id), ("exists", first.id))
        self.assertEqual(await self.store.pending_requests(bob.id), ([first], []))

        outcome, crossed = await self.store.open_friend_request(bob.id, alice.id, NOW)
        self.assertEqual(
            (outcome, crossed.id, crossed.status), ("accepted", first.id, "accepted")
        )
        self.assertTrue(await self.store.are_friends(alice.id, bob.id))
        self.assertTrue(await self.store.are_friends(bob.id, alice.id))
        outcome, _ = await self.store.open_friend_request(alice.id, bob.id, NOW)
        self.assertEqual(outcome, "already_friends")
        self.assertEqual(await self.store.pending_requests(alice.id), ([], []))

    async def test_answer_friend_request_outcomes(self):
        """Only the addressee answers, once; strangers see nothing."""
        alice, bob, eve = await self.make_users("alice", "bob", "eve")
        _, request = await self.store.open_friend_request(alice.id, bob.id, NOW)
        self.assertEqual(
            (await self.store.answer_friend_request(request.id, eve.id, True, NOW))[0],
            "not_found",
        )
        self.assertEqual(
            (await self.store.answer_friend_request(request.id, alice.id, True, NOW))[
                0
            ],
            "forbidden",
        )
        outcome, answered = await self.store.answer_friend_request(
            request.id, bob.id, False, NOW
        )
        self.assertEqual((outcome, answered.status), ("ok", "rejected"))
        self.assertFalse(await self.store.are_friends(alice.id, bob.id))
        self.assertEqual(
            (await self.store.answer_friend_request(request.id, bob.id, True, NOW))[0],
            "answered",
        )
        self.assertEqual(
            (await self.store.answer_friend_request(9999, bob.id, True, NOW))[0],
            "not_found",
        )

    async def test_remove_friendship(self):
        """Removing ends the friendship both ways, once."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        self.assertEqual(
            [f.id for f in await self.store.friends_of(alice.id)], [bob.id]
        )
        self.assertTrue(await self.store.remove_friendship(bob.id, alice.id))
        self.assertFalse(await self.store.are_friends(alice.id, bob.id))
        self.assertFalse(await self.store.remove_friendship(bob.id, alice.id))

    async def test_groups(self):
        """A group holds its owner and members; membership can end."""
        alice, bob, carol = await self.make_users("alice", "bob", "carol")
        group = await self.store.create_group("g", alice.id, [bob.id, carol.id], NOW)
        self.assertEqual((group.name, group.owner_id), ("g", alice.id))
        self.assertEqual(
            [u.id for u in await self.store.group_members(group.id)],
            [alice.id, bob.id, carol.id],
        )
        ((listed, members),) = await self.store.groups_of(bob.id)
        self.assertEqual((listed, len(members)), (group, 3))
        self.assertTrue(await self.store.is_member(group.id, carol.id))
        self.assertTrue(await self.store.remove_member(group.id, carol.id))
        self.assertFalse(await self.store.is_member(group.id, carol.id))
        self.assertEqual(await self.store.groups_of(carol.id), [])
        self.assertIsNone(await self.store.group_by_id(group.id + 50))

    async def test_write_checks_friendship_and_membership(self):
        """Messages to non-friends and groups one is not in are refused,
        in the same batch as accepted ones, which keep their order."""
        alice, bob, eve = await self.make_users("alice", "bob", "eve")
        await self.make_friends(alice, bob)
        group = await self.store.create_group("g", alice.id, [bob.id], NOW)
        results = await self.store.write_messages(
            [
                self.private(alice, bob, "one"),
                self.private(eve, bob, "spam"),
                self.grouped(eve, group, "spam"),
                self.grouped(bob, group, "two"),
            ]
        )
        self.assertEqual(
            [r.outcome for r in results],
            ["created", "not_friends", "not_member", "created"],
        )
        self.assertLess(results[0].message.id, results[3].message.id)
        self.assertEqual(results[0].recipients, (bob.id,))
        self.assertEqual(results[3].recipients, (alice.id,))
        self.assertEqual(results[3].message.sender_username, "bob")

    async def test_write_dedupes_client_msg_id(self):
        """A client_msg_id reused by its sender, in the batch or later,
        returns the stored message; another sender may use the same id."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        first = await self.store.write_messages(
            [
                self.private(alice, bob, "a", "c1"),
                self.private(alice, bob, "a again", "c1"),
                self.private(bob, alice, "b", "c1"),
            ]
        )
        self.assertEqual(
            [r.outcome for r in first], ["created", "duplicate", "created"]
        )
        self.assertEqual(first[1].message, first[0].message)
        later = await self.store.write_messages(
            [self.private(alice, bob, "a", "c1"), self.private(alice, bob, "n")]
        )
        self.assertEqual([r.outcome for r in later], ["duplicate", "created"])
        self.assertEqual(later[0].message.id, first[0].message.id)
        history = await self.store.history(
            private_conversation(alice.id, bob.id), None, 10
        )
        self.assertEqual(len(history), 3)

    async def test_batch_ids_follow_input_order(self):
        """Within one batch ids increase in the order messages came, across
        senders and conversations, with refused ones skipped."""
        alice, bob, carol = await self.make_users("alice", "bob", "carol")
        await self.make_friends(alice, bob)
        group = await self.store.create_group("g", alice.id, [bob.id], NOW)
        batch = []
        for n in range(60):
            batch.append(
                [
                    self.private(alice, bob, f"a{n}"),
                    self.private(bob, alice, f"b{n}", client_msg_id=f"b{n}"),
                    self.grouped(bob, group, f"g{n}"),
                    self.private(carol, bob, "refused"),
                ][n % 4]
            )
        results = await self.store.write_messages(batch)
        ids = [r.message.id for r in results if r.outcome == "created"]
        self.assertEqual(len(ids), 45)
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(
            [r.message.content for r in results if r.outcome == "created"],
            [m.content for m in batch if m.content != "refused"],
        )

    async def test_history_pages(self):
        """History reads newest first below before_id, in pages."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        results = await self.store.write_messages(
            [self.private(alice, bob, f"m{n}") for n in range(7)]
        )
        ids = [r.message.id for r in results]
        conversation = private_conversation(bob.id, alice.id)
        page = await self.store.history(conversation, None, 3)
        self.assertEqual([m.id for m in page], ids[:-4:-1])
        page = await self.store.history(conversation, ids[4], 10)
        self.assertEqual([m.id for m in page], ids[3::-1])

    async def test_backlog(self):
        """Backlog is private messages to the user and others' messages in
        their groups since they joined, in id order, within the bounds."""
        alice, bob, carol = await self.make_users("alice", "bob", "carol")
        await self.make_friends(alice, bob)
        await self.make_friends(carol, bob)
        early = await self.store.write_messages([self.private(alice, bob, "early")])
        group = await self.store.create_group("g", alice.id, [bob.id], NOW)
        results = await self.store.write_messages(
            [
                self.private(alice, bob, "p1"),
                self.grouped(alice, group, "g1"),
                self.grouped(bob, group, "own"),
                self.private(carol, bob, "p2"),
                self.private(bob, alice, "to alice"),
            ]
        )
        ids = [r.message.id for r in results]
        last = await self.store.last_message_id()
        self.assertEqual(last, ids[-1])

        backlog = await self.store.backlog(bob.id, 0, last, 100)
        self.assertEqual([m.content for m in backlog], ["early", "p1", "g1", "p2"])
        backlog = await self.store.backlog(bob.id, early[0].message.id, last, 2)
        self.assertEqual([m.content for m in backlog], ["p1", "g1"])
        backlog = await self.store.backlog(bob.id, 0, ids[1], 100)
        self.assertEqual([m.content for m in backlog], ["early", "p1", "g1"])
        self.assertEqual(
            [m.content for m in await self.store.backlog(alice.id, 0, last, 100)],
            ["own", "to alice"],
        )

    async def test_group_join_bounds_backlog(self):
        """A member's group backlog starts after they joined: messages from
        before a second group's creation never count."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        await self.store.write_messages([self.private(bob, alice, "x")])
        group = await self.store.create_group("g", alice.id, [bob.id], NOW)
        (sent,) = await self.store.write_messages([self.grouped(alice, group, "g1")])
        backlog = await self.store.backlog(bob.id, 0, sent.message.id, 10)
        self.assertEqual([m.content for m in backlog], ["g1"])

    async def test_cursor_moves_forward_only(self):
        """The cursor never moves back nor past the newest message."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        results = await self.store.write_messages(
            [self.private(alice, bob) for _ in range(3)]
        )
        ids = [r.message.id for r in results]
        self.assertEqual(await self.store.advance_cursor(bob.id, ids[1]), ids[1])
        self.assertEqual(await self.store.advance_cursor(bob.id, ids[0]), ids[1])
        self.assertEqual(await self.store.advance_cursor(bob.id, 10**15), ids[2])
        self.assertEqual((await self.store.user_by_id(bob.id)).delivered_up_to, ids[2])

    async def test_failed_transaction_leaves_nothing(self):
        """An error halfway through a transaction rolls back its writes."""
        (alice,) = await self.make_users("alice")

        def half_then_fail():
            from chatd.storage.database import Statement

            yield Statement(
                "UPDATE users SET nickname = ? WHERE id = ?", ("changed", alice.id)
            )
            raise RuntimeError("boom")

        with self.assertRaises(RuntimeError):
            await self.store._db.run("half", half_then_fail)
        self.assertEqual((await self.store.user_by_id(alice.id)).nickname, "alice")

    async def test_text_round_trips(self):
        """Unicode content and nicknames come back unchanged."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        text = "emoji 😀, accents é, CJK 漢字, RTL שלום, newline\nand tab\t"
        (result,) = await self.store.write_messages([self.private(alice, bob, text)])
        (stored,) = await self.store.history(
            private_conversation(alice.id, bob.id), None, 1
        )
        self.assertEqual(stored.content, text)
        updated = await self.store.set_nickname(alice.id, "Ålice ☕")
        self.assertEqual(updated.nickname, "Ålice ☕")

    async def test_awkward_text_round_trips(self):
        """Quotes, backslashes, braces, commas and the word NULL survive a
        write and come back as sent, as content and as client_msg_id."""
        alice, bob = await self.make_users("alice", "bob")
        await self.make_friends(alice, bob)
        awkward = ['say "hi"', "back\\slash\\", "{a,b}", "NULL", "x,y", '\\"', "'"]
        batch = [self.private(alice, bob, text, client_msg_id=text) for text in awkward]
        results = await self.store.write_messages(batch)
        self.assertEqual([r.outcome for r in results], ["created"] * len(awkward))
        stored = await self.store.history(
            private_conversation(alice.id, bob.id), None, 20
        )
        self.assertEqual([m.content for m in reversed(stored)], awkward)
        self.assertEqual([m.client_msg_id for m in reversed(stored)], awkward)
        again = await self.store.write_messages([self.private(alice, bob, "x", "NULL")])
        self.assertEqual(again[0].outcome, "duplicate")
        self.assertEqual(again[0].message.content, "NULL")


def _schema_versions():
    from chatd.storage.database import Statement

    rows = yield Statement("SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in rows]


class SqliteStoreTests(StoreTestsMixin, unittest.TestCase):
    """The store on SQLite."""

    backend = "sqlite"


class PostgresStoreTests(StoreTestsMixin, unittest.TestCase):
    """The store on PostgreSQL (when CHATD_TEST_POSTGRES is set)."""

    backend = "postgres"
