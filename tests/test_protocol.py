"""The protocol end to end: a real server on loopback, real WebSocket clients.

Every test runs on SQLite and, when CHATD_TEST_POSTGRES is set, on
PostgreSQL too.
"""

from twisted.internet import defer, reactor, task

from tests.support import ChatTestCase


def _count_sessions():
    from chatd.storage.database import Statement

    rows = yield Statement("SELECT COUNT(*) FROM sessions")
    return rows[0][0]


async def wait(seconds: float) -> None:
    """Let the reactor run for a while (for things that must NOT happen)."""
    await task.deferLater(reactor, seconds, lambda: None)


class ConversationTestsMixin:
    """Private and group conversations, history, multi-session echo."""

    async def test_private_conversation(self):
        """A message between friends reaches the recipient as an ``in`` event
        and the sender as the reply; both see it in history."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)

        sent = await alice.call(
            "send_message", to_user=bob.user["id"], content="hello bob"
        )
        event = await bob.next_event("message")
        self.assertEqual(event["direction"], "in")
        self.assertEqual(event["message"], sent["message"])
        self.assertEqual(sent["message"]["content"], "hello bob")
        self.assertEqual(sent["message"]["to_user"], bob.user["id"])
        self.assertIsNone(sent["message"]["group_id"])
        self.assertEqual(
            sent["message"]["sender"],
            {"id": alice.user["id"], "username": "alice", "nickname": "alice"},
        )
        self.assertRegex(
            sent["message"]["sent_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
        )

        answer = await bob.call("send_message", to_user=alice.user["id"], content="hi")
        self.assertGreater(answer["message"]["id"], sent["message"]["id"])
        await alice.next_event("message")

        for client, other in ((alice, bob), (bob, alice)):
            history = await client.call("get_history", with_user=other.user["id"])
            self.assertEqual(
                [m["content"] for m in history["messages"]], ["hello bob", "hi"]
            )
            self.assertFalse(history["has_more"])

    async def test_group_conversation(self):
        """A group of friends: members are told of the group, and a message
        from one member reaches every other member once."""
        await self.start()
        alice, bob, carol = [await self.user(n) for n in ("alice", "bob", "carol")]
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)

        created = await alice.call(
            "create_group", name="trio", members=[bob.user["id"], carol.user["id"]]
        )
        group = created["group"]
        self.assertEqual(group["name"], "trio")
        self.assertEqual(group["owner_id"], alice.user["id"])
        self.assertEqual(
            sorted(m["username"] for m in group["members"]), ["alice", "bob", "carol"]
        )
        for member in (bob, carol):
            added = await member.next_event("group_added")
            self.assertEqual(added["group"]["id"], group["id"])

        sent = await bob.call("send_message", group_id=group["id"], content="hey all")
        for member in (alice, carol):
            event = await member.next_event("message")
            self.assertEqual(event["message"]["id"], sent["message"]["id"])
            self.assertEqual(event["message"]["group_id"], group["id"])
            self.assertEqual(event["direction"], "in")
        await bob.sync()
        self.assertEqual(bob.pending_events("message"), [])

        members = await carol.call("get_group_members", group_id=group["id"])
        self.assertEqual(len(members["members"]), 3)
        groups = await carol.call("get_groups")
        self.assertEqual([g["id"] for g in groups["groups"]], [group["id"]])
        history = await carol.call("get_history", group_id=group["id"])
        self.assertEqual([m["content"] for m in history["messages"]], ["hey all"])

    async def test_multi_session_echo(self):
        """The sender's other sessions get their message with direction
        ``out``; the sending session gets only the reply."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        second = await self.connect()
        await second.call("login", username="alice", password="correct horse")

        sent = await alice.call("send_message", to_user=bob.user["id"], content="x")
        echo = await second.next_event("message")
        self.assertEqual(echo["direction"], "out")
        self.assertEqual(echo["message"]["id"], sent["message"]["id"])
        await bob.next_event("message")
        await alice.sync()
        self.assertEqual(alice.pending_events("message"), [])

    async def test_retry_with_same_client_msg_id(self):
        """The same client_msg_id from the same sender returns the stored
        message instead of storing a second one."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)

        first = await alice.call(
            "send_message", to_user=bob.user["id"], content="once", client_msg_id="c1"
        )
        again = await alice.call(
            "send_message", to_user=bob.user["id"], content="once", client_msg_id="c1"
        )
        self.assertEqual(first["message"], again["message"])
        self.assertEqual(first["message"]["client_msg_id"], "c1")
        history = await bob.call("get_history", with_user=alice.user["id"])
        self.assertEqual(len(history["messages"]), 1)
        await bob.next_event("message")
        await bob.sync()
        self.assertEqual(bob.pending_events("message"), [])

    async def test_pipelined_sends_share_commits(self):
        """Sends made without waiting are answered in request order with ids
        in that order, share commits, and a later request sees them all."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        store = self.service.store
        batches = []
        real = store.write_messages

        async def counting(batch):
            batches.append(len(batch))
            return await real(batch)

        self.patch(store, "write_messages", counting)
        waiters = [
            alice.request("send_message", to_user=bob.user["id"], content=f"p{n}")
            for n in range(20)
        ]
        history = alice.request("get_history", with_user=bob.user["id"])
        replies = [await w for w in waiters]

        ids = [r["data"]["message"]["id"] for r in replies]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual([r["id"] for r in replies], sorted(r["id"] for r in replies))
        self.assertEqual(sum(batches), 20)
        self.assertLess(len(batches), 20)
        seen = [m["id"] for m in (await history)["data"]["messages"]]
        self.assertEqual(seen, ids)

    async def test_history_three_pages(self):
        """Paging back with before_id covers the conversation exactly: no
        gap, no duplicate, each page oldest to newest."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        sent = []
        for n in range(25):
            reply = await alice.call(
                "send_message", to_user=bob.user["id"], content=f"m{n}"
            )
            sent.append(reply["message"]["id"])

        pages, before = [], None
        while True:
            params = {"with_user": alice.user["id"], "limit": 10}
            if before is not None:
                params["before_id"] = before
            page = await bob.call("get_history", **params)
            ids = [m["id"] for m in page["messages"]]
            self.assertEqual(ids, sorted(ids))
            pages.append(ids)
            if not page["has_more"]:
                break
            before = ids[0]
        self.assertEqual([len(p) for p in pages], [10, 10, 5])
        self.assertEqual(sorted(sum(pages, [])), sent)


class BacklogTestsMixin:
    """Offline messages: delivered at login until acked."""

    async def _offline_setup(self, count: int):
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        await bob.close()
        ids = []
        for n in range(count):
            reply = await alice.call(
                "send_message", to_user=bob.user["id"], content=f"while away {n}"
            )
            ids.append(reply["message"]["id"])
        return alice, ids

    async def _login_bob(self):
        client = await self.connect()
        await client.call("login", username="bob", password="correct horse")
        return client

    async def test_backlog_at_login_and_ack(self):
        """Messages sent while offline arrive at login, oldest first; once
        acked they do not come again."""
        await self.start()
        alice, ids = await self._offline_setup(3)

        bob = await self._login_bob()
        for name in ("friends", "groups"):
            await bob.next_event(name)
        backlog = await bob.next_event("offline_messages")
        self.assertEqual([m["id"] for m in backlog["messages"]], ids)
        self.assertFalse(backlog["has_more"])
        acked = await bob.call("ack", up_to=ids[-1])
        self.assertEqual(acked["delivered_up_to"], ids[-1])
        await bob.close()

        bob = await self._login_bob()
        backlog = await bob.next_event("offline_messages")
        self.assertEqual(backlog["messages"], [])

    async def test_unacked_backlog_comes_again(self):
        """A connection that drops before acking gets the backlog again at
        the next login."""
        await self.start()
        alice, ids = await self._offline_setup(2)

        bob = await self._login_bob()
        first = await bob.next_event("offline_messages")
        bob.protocol.dropConnection(abort=True)
        await bob.closed

        bob = await self._login_bob()
        second = await bob.next_event("offline_messages")
        self.assertEqual([m["id"] for m in first["messages"]], ids)
        self.assertEqual(second["messages"], first["messages"])

    async def test_backlog_in_batches(self):
        """With has_more, the next batch follows the ack of the current one;
        an ack short of the batch's end does not trigger it."""
        await self.start(messages={"backlog_batch": 2})
        alice, ids = await self._offline_setup(5)

        bob = await self._login_bob()
        batch = await bob.next_event("offline_messages")
        self.assertEqual([m["id"] for m in batch["messages"]], ids[:2])
        self.assertTrue(batch["has_more"])

        await bob.call("ack", up_to=ids[0])
        await bob.sync()
        self.assertEqual(bob.pending_events("offline_messages"), [])

        received = list(ids[:2])
        while batch["has_more"]:
            await bob.call("ack", up_to=batch["messages"][-1]["id"])
            batch = await bob.next_event("offline_messages")
            received += [m["id"] for m in batch["messages"]]
        self.assertEqual(received, ids)

    async def test_ack_never_moves_back(self):
        """An ack below the cursor leaves it where it is, and one beyond the
        newest message stops at the newest message."""
        await self.start()
        alice, ids = await self._offline_setup(3)
        bob = await self._login_bob()
        self.assertEqual(
            (await bob.call("ack", up_to=ids[1]))["delivered_up_to"], ids[1]
        )
        self.assertEqual(
            (await bob.call("ack", up_to=ids[0]))["delivered_up_to"], ids[1]
        )
        far = await bob.call("ack", up_to=10**12)
        self.assertEqual(far["delivered_up_to"], ids[-1])

    async def test_group_backlog(self):
        """Group messages sent while a member is offline are backlog for
        them, but not for the sender."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        group = (await alice.call("create_group", name="g", members=[bob.user["id"]]))[
            "group"
        ]
        await bob.close()
        sent = await alice.call("send_message", group_id=group["id"], content="g1")

        bob = await self._login_bob()
        backlog = await bob.next_event("offline_messages")
        self.assertEqual(
            [m["id"] for m in backlog["messages"]], [sent["message"]["id"]]
        )
        await alice.close()
        again = await self.connect()
        await again.call("login", username="alice", password="correct horse")
        self.assertEqual((await again.next_event("offline_messages"))["messages"], [])


class SessionTestsMixin:
    """Login, resume, logout, the session limit and password changes."""

    async def test_login_events_in_order(self):
        """After the login reply come friends, groups, offline_messages and
        online_users, in that order."""
        await self.start()
        await self.user("alice")
        client = await self.connect()
        await client.call("login", username="alice", password="correct horse")
        await client.next_event("online_users")
        names = [f["event"] for f in client.frames if f["type"] == "event"]
        self.assertEqual(
            names[:4], ["friends", "groups", "offline_messages", "online_users"]
        )
        self.assertEqual(client.frames[0]["type"], "reply")

    async def test_resume_and_logout(self):
        """A session token logs in again until logout revokes it."""
        await self.start()
        alice = await self.user("alice")
        other = await self.connect()
        resumed = await other.call("resume", session_token=alice.token)
        self.assertEqual(resumed["user"]["id"], alice.user["id"])

        self.assertEqual(await alice.call("logout"), {})
        error = await alice.error("get_friends")
        self.assertEqual(error["code"], "not_authenticated")
        third = await self.connect()
        error = await third.error("resume", session_token=alice.token)
        self.assertEqual(error["code"], "bad_credentials")

    async def test_session_limit_closes_oldest(self):
        """Past the per-user limit the oldest session is closed with 4001
        and a reason saying so."""
        await self.start(security={"max_sessions_per_user": 2})
        oldest = await self.user("alice")
        second = await self.connect()
        await second.call("login", username="alice", password="correct horse")
        third = await self.connect()
        await third.call("login", username="alice", password="correct horse")

        code, reason = await oldest.closed
        self.assertEqual(code, 4001)
        self.assertIn("too many sessions", reason)
        await second.sync()
        await third.sync()

    async def test_change_password(self):
        """change_password closes the user's other sessions with 4002; the
        old password stops working and the new one works."""
        await self.start()
        alice = await self.user("alice")
        other = await self.connect()
        await other.call("login", username="alice", password="correct horse")

        await alice.call(
            "change_password",
            old_password="correct horse",
            new_password="battery staple",
        )
        code, _ = await other.closed
        self.assertEqual(code, 4002)
        fresh = await self.connect()
        error = await fresh.error("login", username="alice", password="correct horse")
        self.assertEqual(error["code"], "bad_credentials")
        await fresh.call("login", username="alice", password="battery staple")
        await alice.sync()

    async def _close_during(self, obj, name: str, action: str) -> None:
        """Hold ``obj.name`` until the client that sent ``action`` for
        alice has closed, then let it finish."""
        gate = defer.Deferred()
        real = getattr(obj, name)

        async def held(*args, **kwargs):
            await gate
            return await real(*args, **kwargs)

        self.patch(obj, name, held)
        client = await self.connect()
        pending = client.request(action, username="alice", password="correct horse")
        pending.addErrback(lambda _: None)
        await wait(0.1)
        client.protocol.dropConnection(abort=True)
        await client.closed
        await wait(0.1)
        gate.callback(None)
        await wait(0.2)

    async def test_login_abandoned_during_password_check(self):
        """A client that leaves while its password is checked leaves no
        online session behind and no usable token."""
        await self.start()
        alice = await self.user("alice")
        await alice.close()
        await self._close_during(self.service._hasher, "check", "login")

        self.assertFalse(self.service.registry.is_online(alice.user["id"]))
        watcher = await self.user("watcher")
        listed = await watcher.call("get_online_users")
        self.assertEqual([u["username"] for u in listed["users"]], ["watcher"])
        # alice's first session and the watcher's; none for the lost login.
        sessions = await self.service.store._db.run("count", _count_sessions)
        self.assertEqual(sessions, 2)

    async def test_login_abandoned_during_login_events(self):
        """A client that leaves while its login events are gathered is not
        left online, in the registry or in the online list."""
        await self.start()
        alice = await self.user("alice")
        await alice.close()
        friends = self.service._factory.router._services.friends
        await self._close_during(friends, "friends", "login")

        self.assertFalse(self.service.registry.is_online(alice.user["id"]))
        watcher = await self.user("watcher")
        snapshot = await watcher.next_event("online_users")
        self.assertEqual([u["username"] for u in snapshot["users"]], ["watcher"])

    async def test_long_password_counts_in_full(self):
        """Passwords longer than bcrypt's 72 bytes work, and a difference
        past byte 72 matters."""
        await self.start()
        password = "p" * 900 + "end"
        await self.user("alice", password=password)
        client = await self.connect()
        error = await client.error(
            "login", username="alice", password="p" * 900 + "END"
        )
        self.assertEqual(error["code"], "bad_credentials")
        await client.call("login", username="alice", password=password)

    async def test_usernames_compare_ignoring_case(self):
        """Two accounts cannot differ only in case; login ignores case."""
        await self.start()
        await self.user("Alice")
        client = await self.connect()
        error = await client.error("register", username="aLICE", password="whatever1")
        self.assertEqual(error["code"], "username_taken")
        data = await client.call("login", username="ALICE", password="correct horse")
        self.assertEqual(data["user"]["username"], "Alice")


class FriendsTestsMixin:
    """Friend requests and friendships."""

    async def test_request_accept_reject_pending(self):
        """Requests show as pending both ways; the addressee is told of a
        request, the requester of its answer."""
        await self.start()
        alice, bob, carol = [await self.user(n) for n in ("alice", "bob", "carol")]

        to_bob = (await alice.call("send_friend_request", username="bob"))["request"]
        self.assertEqual(to_bob["status"], "pending")
        self.assertEqual(to_bob["from"]["id"], alice.user["id"])
        told = await bob.next_event("friend_request")
        self.assertEqual(told["request"]["id"], to_bob["id"])
        to_carol = (await alice.call("send_friend_request", username="carol"))[
            "request"
        ]

        pending = await alice.call("get_pending_requests")
        self.assertEqual(
            [r["id"] for r in pending["outgoing"]], [to_bob["id"], to_carol["id"]]
        )
        self.assertEqual(pending["incoming"], [])
        self.assertEqual(
            [r["id"] for r in (await bob.call("get_pending_requests"))["incoming"]],
            [to_bob["id"]],
        )

        rejected = await carol.call(
            "respond_friend_request", request_id=to_carol["id"], accept=False
        )
        self.assertEqual(rejected["request"]["status"], "rejected")
        answered = await alice.next_event("friend_request_answered")
        self.assertEqual(answered["request"]["status"], "rejected")

        await bob.call("respond_friend_request", request_id=to_bob["id"], accept=True)
        friend = await alice.next_event("friend_added")
        self.assertEqual(friend["friend"]["id"], bob.user["id"])
        self.assertTrue(friend["friend"]["online"])
        self.assertEqual(
            [f["id"] for f in (await alice.call("get_friends"))["friends"]],
            [bob.user["id"]],
        )
        self.assertEqual((await alice.call("get_pending_requests"))["outgoing"], [])

    async def test_crossing_request_accepts(self):
        """A request to someone who already asked you accepts theirs."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await alice.call("send_friend_request", username="bob")
        back = await bob.call("send_friend_request", username="alice")
        self.assertEqual(back["request"]["status"], "accepted")
        self.assertEqual(back["request"]["from"]["id"], alice.user["id"])
        await alice.next_event("friend_added")
        await bob.next_event("friend_added")
        answered = await alice.next_event("friend_request_answered")
        self.assertEqual(answered["request"]["status"], "accepted")

    async def test_only_the_addressee_answers(self):
        """The requester gets forbidden; a stranger, not_found; a second
        answer, bad_request."""
        await self.start()
        alice, bob, eve = [await self.user(n) for n in ("alice", "bob", "eve")]
        request = (await alice.call("send_friend_request", username="bob"))["request"]

        error = await alice.error(
            "respond_friend_request", request_id=request["id"], accept=True
        )
        self.assertEqual(error["code"], "forbidden")
        error = await eve.error(
            "respond_friend_request", request_id=request["id"], accept=True
        )
        self.assertEqual(error["code"], "not_found")
        await bob.call("respond_friend_request", request_id=request["id"], accept=True)
        error = await bob.error(
            "respond_friend_request", request_id=request["id"], accept=False
        )
        self.assertEqual(error["code"], "bad_request")
        self.assertEqual(error["field"], "request_id")

    async def test_remove_friend(self):
        """After remove_friend neither side may message or read the other;
        both are told."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        await alice.call("send_message", to_user=bob.user["id"], content="before")

        self.assertEqual(await alice.call("remove_friend", user_id=bob.user["id"]), {})
        removed = await bob.next_event("friend_removed")
        self.assertEqual(removed["user_id"], alice.user["id"])
        error = await bob.error("send_message", to_user=alice.user["id"], content="x")
        self.assertEqual(error["code"], "not_friends")
        error = await bob.error("get_history", with_user=alice.user["id"])
        self.assertEqual(error["code"], "not_friends")
        error = await alice.error("remove_friend", user_id=bob.user["id"])
        self.assertEqual(error["code"], "not_friends")


class PresenceTestsMixin:
    """Who is online, and who is told."""

    async def test_presence_first_and_last_session(self):
        """Friends hear of the first session opening and the last closing;
        a second device changes nothing."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        await bob.close()
        offline = await alice.next_event("presence")
        self.assertEqual(offline, {"user_id": bob.user["id"], "online": False})

        first = await self.connect()
        await first.call("login", username="bob", password="correct horse")
        online = await alice.next_event("presence")
        self.assertEqual(online, {"user_id": bob.user["id"], "online": True})

        second = await self.connect()
        await second.call("login", username="bob", password="correct horse")
        await second.close()
        await alice.sync()
        await wait(0.1)
        self.assertEqual(alice.pending_events("presence"), [])

        await first.close()
        self.assertEqual(
            await alice.next_event("presence"),
            {"user_id": bob.user["id"], "online": False},
        )

    async def test_online_users_and_changes(self):
        """The online list comes at login; changes follow, coalesced."""
        await self.start(presence={"online_users_interval": 0.2})
        alice = await self.user("alice")
        snapshot = await alice.next_event("online_users")
        self.assertEqual(snapshot["total"], 1)
        self.assertEqual([u["username"] for u in snapshot["users"]], ["alice"])

        bob = await self.user("bob")
        carol = await self.user("carol")
        changes = await alice.next_event("online_users_changed")
        added = {u["username"] for u in changes["added"]}
        while added != {"alice", "bob", "carol"} and not added >= {"bob", "carol"}:
            more = await alice.next_event("online_users_changed")
            added |= {u["username"] for u in more["added"]}
        self.assertTrue({"bob", "carol"} <= added)

        await bob.close()
        removed = []
        while bob.user["id"] not in removed:
            removed += (await alice.next_event("online_users_changed"))["removed"]
        listed = await carol.call("get_online_users")
        self.assertEqual(
            sorted(u["username"] for u in listed["users"]), ["alice", "carol"]
        )

    async def test_quick_visit_is_removed(self):
        """A user who comes and goes within one interval is still reported
        removed to a client whose login list held them."""
        await self.start(presence={"online_users_interval": 0.5})
        watcher = await self.user("watcher")
        visitor = await self.user("visitor")
        late = await self.user("latecomer")
        snapshot = await late.next_event("online_users")
        self.assertIn("visitor", [u["username"] for u in snapshot["users"]])
        await visitor.close()

        removed: list[int] = []
        while visitor.user["id"] not in removed:
            change = await late.next_event("online_users_changed")
            self.assertNotIn(visitor.user["id"], [u["id"] for u in change["added"]])
            removed += change["removed"]
        await watcher.sync()

    async def test_online_list_capped(self):
        """The login list holds at most online_users_limit users; total
        tells how many are online."""
        await self.start(presence={"online_users_limit": 2})
        for name in ("user1", "user2", "user3"):
            await self.user(name)
        last = await self.user("user4")
        snapshot = await last.next_event("online_users")
        self.assertEqual(len(snapshot["users"]), 2)
        self.assertEqual(snapshot["total"], 4)

    async def test_online_list_off(self):
        """With online_users = off there is no list and asking is forbidden."""
        await self.start(presence={"online_users": "off"})
        alice = await self.user("alice")
        error = await alice.error("get_online_users")
        self.assertEqual(error["code"], "forbidden")
        self.assertEqual(alice.pending_events("online_users"), [])

    async def test_nickname_push(self):
        """A new nickname reaches online friends and the user's other
        sessions, not the session that changed it."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        second = await self.connect()
        await second.call("login", username="alice", password="correct horse")

        data = await alice.call("update_nickname", nickname="Alice W.")
        self.assertEqual(data["user"]["nickname"], "Alice W.")
        for client in (bob, second):
            pushed = await client.next_event("profile_updated")
            self.assertEqual(pushed["user"]["nickname"], "Alice W.")
        await alice.sync()
        self.assertEqual(alice.pending_events("profile_updated"), [])
        sent = await bob.call("send_message", to_user=alice.user["id"], content="hi")
        history = await bob.call("get_history", with_user=alice.user["id"])
        self.assertEqual(history["messages"][-1]["id"], sent["message"]["id"])
        reply = await alice.call("send_message", to_user=bob.user["id"], content="yo")
        self.assertEqual(reply["message"]["sender"]["nickname"], "Alice W.")


class ErrorCodeTestsMixin:
    """Every error code, provoked for real."""

    async def test_bad_json(self):
        """Frames that are not JSON objects get bad_json; binary frames too;
        the connection keeps working."""
        await self.start()
        client = await self.connect()
        reply = await client.raw_reply("{not json")
        self.assertEqual(reply["error"]["code"], "bad_json")
        self.assertIsNone(reply["id"])
        reply = await client.raw_reply(b'{"action": "ping", "x": "\\ud800"}')
        self.assertEqual(reply["error"]["code"], "bad_json")
        reply = await client.raw_reply(b"\x00\x01", binary=True)
        self.assertEqual(reply["error"]["code"], "bad_json")
        await client.sync()

    async def test_bad_request_names_field(self):
        """A wrong type or a missing field is bad_request naming the field,
        echoing id and action."""
        await self.start()
        client = await self.connect()
        reply = await client.request("login", username=5, password="x")
        self.assertEqual(reply["error"]["code"], "bad_request")
        self.assertEqual(reply["error"]["field"], "username")
        self.assertEqual(reply["action"], "login")
        self.assertEqual(reply["id"], 1)
        error = await client.error("login", username="bob")
        self.assertEqual(error["field"], "password")
        error = await client.error("register", username="a b", password="12345678")
        self.assertEqual(error["field"], "username")
        error = await client.error("register", username="abc", password="short")
        self.assertEqual(error["field"], "password")
        reply = await client.raw_reply("[1, 2]")
        self.assertEqual(reply["error"]["code"], "bad_request")

    async def test_unknown_action_and_not_authenticated(self):
        """An unknown action is unknown_action; before login, actions other
        than register, login, resume and ping are not_authenticated."""
        await self.start()
        client = await self.connect()
        self.assertEqual((await client.error("fly"))["code"], "unknown_action")
        self.assertEqual((await client.error(None))["field"], "action")
        error = await client.error("send_message", to_user=1, content="x")
        self.assertEqual(error["code"], "not_authenticated")
        await client.call("ping")

    async def test_auth_errors(self):
        """already_authenticated, bad_credentials and username_taken."""
        await self.start()
        alice = await self.user("alice")
        error = await alice.error("login", username="alice", password="correct horse")
        self.assertEqual(error["code"], "already_authenticated")
        other = await self.connect()
        error = await other.error("login", username="alice", password="wrong pass")
        self.assertEqual(error["code"], "bad_credentials")
        error = await other.error("login", username="nobody", password="wrong pass")
        self.assertEqual(error["code"], "bad_credentials")
        error = await other.error("register", username="alice", password="12345678")
        self.assertEqual(error["code"], "username_taken")

    async def test_target_errors(self):
        """not_found, not_friends, not_member and forbidden for targets."""
        await self.start()
        alice, bob, eve = [await self.user(n) for n in ("alice", "bob", "eve")]
        await self.befriend(alice, bob)
        group = (await alice.call("create_group", name="g", members=[bob.user["id"]]))[
            "group"
        ]

        error = await alice.error("send_message", to_user=999999, content="x")
        self.assertEqual(error["code"], "not_found")
        error = await alice.error("send_friend_request", username="nobody")
        self.assertEqual(error["code"], "not_found")
        error = await eve.error("send_message", to_user=alice.user["id"], content="x")
        self.assertEqual(error["code"], "not_friends")
        error = await eve.error("send_message", group_id=group["id"], content="x")
        self.assertEqual(error["code"], "not_member")
        error = await eve.error("get_history", group_id=group["id"])
        self.assertEqual(error["code"], "not_member")
        error = await eve.error("get_group_members", group_id=group["id"])
        self.assertEqual(error["code"], "not_member")
        error = await eve.error("get_group_members", group_id=999999)
        self.assertEqual(error["code"], "not_found")
        error = await alice.error("create_group", name="x", members=[eve.user["id"]])
        self.assertEqual(error["code"], "not_friends")
        error = await alice.error("send_message", to_user=bob.user["id"], content=" ")
        self.assertEqual(error["code"], "bad_request")
        error = await alice.error(
            "send_message", to_user=bob.user["id"], group_id=group["id"], content="x"
        )
        self.assertEqual(error["code"], "bad_request")

    async def test_leave_group(self):
        """A member who leaves is told apart from the group: not_member."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        group = (await alice.call("create_group", name="g", members=[bob.user["id"]]))[
            "group"
        ]
        await bob.call("leave_group", group_id=group["id"])
        left = await alice.next_event("group_member_left")
        self.assertEqual(left, {"group_id": group["id"], "user_id": bob.user["id"]})
        error = await bob.error("send_message", group_id=group["id"], content="x")
        self.assertEqual(error["code"], "not_member")
        members = await alice.call("get_group_members", group_id=group["id"])
        self.assertEqual([m["id"] for m in members["members"]], [alice.user["id"]])

    async def test_too_large(self):
        """Content past its limit and frames past max_frame_bytes are
        too_large; frames past twice the limit close the connection 1009."""
        await self.start(security={"max_frame_bytes": 4096, "content_max_length": 100})
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        error = await alice.error(
            "send_message", to_user=bob.user["id"], content="x" * 101
        )
        self.assertEqual(error["code"], "too_large")
        error = await alice.error("update_nickname", nickname="n" * 65)
        self.assertEqual(error["code"], "too_large")

        reply = await alice.request("ping", pad="x" * 5000)
        self.assertEqual(reply["error"]["code"], "too_large")
        self.assertEqual(reply["action"], "ping")
        await alice.sync()

        alice.send_raw('{"action": "ping", "pad": "' + "x" * 9000 + '"}')
        code, _ = await alice.closed
        self.assertEqual(code, 1009)
        await bob.sync()

    async def test_invalid_utf8_closes_cleanly(self):
        """A text frame that is not UTF-8 closes that connection (1007) and
        disturbs nobody else."""
        await self.start()
        alice, bob = await self.user("alice"), await self.user("bob")
        await self.befriend(alice, bob)
        bad = await self.connect()
        bad.protocol.sendMessage(b'{"action": "ping", "x": "\xff\xfe"}', isBinary=False)
        code, _ = await bad.closed
        self.assertEqual(code, 1007)
        await alice.call("send_message", to_user=bob.user["id"], content="still here")
        await bob.next_event("message")

    async def test_rate_limited_when_too_many_queued(self):
        """While a request is in progress, at most 256 more wait on one
        connection; the excess is answered rate_limited (echoing its id), and
        every reply still comes in request order."""
        await self.start()
        alice = await self.user("alice")
        gate = defer.Deferred()
        real = self.service_friends().friends

        async def slow(user):
            await gate
            return await real(user)

        self.patch(self.service_friends(), "friends", slow)
        first = alice.request("get_friends")
        waiters = [alice.request("ping") for _ in range(300)]
        await wait(0.2)
        self.assertFalse(first.called)
        gate.callback(None)

        self.assertTrue((await first)["ok"])
        replies = [await w for w in waiters]
        self.assertTrue(all(r["ok"] for r in replies[:256]))
        refused = replies[256:]
        self.assertEqual({r["error"]["code"] for r in refused}, {"rate_limited"})
        self.assertEqual({r["action"] for r in refused}, {"ping"})
        order = [f["id"] for f in alice.frames if f.get("type") == "reply"]
        self.assertEqual(order[-301:], sorted(order[-301:]))

    async def test_internal_error_hides_details(self):
        """An unexpected exception is logged with its traceback and answered
        internal_error with nothing internal in it."""
        await self.start()
        alice = await self.user("alice")

        async def broken(user):
            raise RuntimeError("secret detail")

        self.patch(self.service_friends(), "friends", broken)
        error = await alice.error("get_friends")
        self.assertEqual(error, {"code": "internal_error", "message": "internal error"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        await alice.sync()

    def service_friends(self):
        """The live FriendsService of the running server."""
        connection = self.service.registry.all_sessions()[0]
        return connection.factory.router._services.friends


_MIXINS = (
    ConversationTestsMixin,
    BacklogTestsMixin,
    SessionTestsMixin,
    FriendsTestsMixin,
    PresenceTestsMixin,
    ErrorCodeTestsMixin,
)


class SqliteProtocolTests(*_MIXINS, ChatTestCase):
    """The protocol on the SQLite store."""

    backend = "sqlite"


class PostgresProtocolTests(*_MIXINS, ChatTestCase):
    """The protocol on the PostgreSQL store."""

    backend = "postgres"
