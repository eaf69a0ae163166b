"""Ordering under concurrency: ids in commit order, as readers see them.

Several senders send at once while a reader both receives the messages live
and keeps reading history. The single message writer must give ids that
readers never see filled in later: a history read that showed ids up to N
shows, forever after, exactly the same ids up to N.
"""

from twisted.internet import defer

from tests.support import ChatTestCase

SENDERS = ("ann", "ben", "cat", "dan")
PER_SENDER = 60
#: Requests each sender keeps in flight at once.
WINDOW = 10


class OrderingTestsMixin:
    """Concurrent senders, one reader of everything."""

    async def _send_all(self, client, name, targets, sent):
        """Send PER_SENDER messages, WINDOW at a time, round the targets."""
        for start in range(0, PER_SENDER, WINDOW):
            waiters = [
                client.request(
                    "send_message", content=f"{name} {n}", **targets[n % len(targets)]
                )
                for n in range(start, start + WINDOW)
            ]
            for waiter in waiters:
                reply = await waiter
                self.assertTrue(reply["ok"], reply)
                sent.append(reply["data"]["message"]["id"])

    async def _watch_history(self, reader, group_id, done, snapshots):
        """Read the group's newest page again and again until ``done``."""
        while not done:
            page = await reader.call("get_history", group_id=group_id, limit=200)
            snapshots.append([m["id"] for m in page["messages"]])

    async def test_concurrent_senders_commit_order(self):
        """Four senders, ten requests in flight each, to a group and to the
        reader privately: the reader's live events come in strictly rising
        id order, and no history read ever misses an id below its newest
        one that a later read shows."""
        await self.start()
        reader = await self.user("reader")
        senders = [await self.user(name) for name in SENDERS]
        for sender in senders:
            await self.befriend(sender, reader)
        for other in senders[1:]:
            await self.befriend(senders[0], other)
        created = await senders[0].call(
            "create_group",
            name="all",
            members=[reader.user["id"]] + [s.user["id"] for s in senders[1:]],
        )
        group_id = created["group"]["id"]
        for sender in senders[1:]:
            await sender.next_event("group_added")
        await reader.next_event("group_added")
        targets = [{"group_id": group_id}, {"to_user": reader.user["id"]}]

        sent: list[int] = []
        done: list[bool] = []
        snapshots: list[list[int]] = []
        watcher = defer.Deferred.fromCoroutine(
            self._watch_history(reader, group_id, done, snapshots)
        )
        await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(
                    self._send_all(client, name, targets, sent)
                )
                for client, name in zip(senders, SENDERS, strict=True)
            ]
        )
        done.append(True)
        await watcher

        total = len(SENDERS) * PER_SENDER
        self.assertEqual(len(set(sent)), total)
        while len(reader.pending_events("message")) < total:
            await reader.sync()
        live = [e["message"]["id"] for e in reader.pending_events("message")]
        self.assertEqual(live, sorted(set(live)))
        self.assertEqual(sorted(live), sorted(sent))

        final = await reader.call("get_history", group_id=group_id, limit=200)
        final_ids = [m["id"] for m in final["messages"]]
        self.assertEqual(len(final_ids), total // 2)
        self.assertEqual(final_ids, sorted(final_ids))
        group_live = [
            e["message"]["id"]
            for e in reader.pending_events("message")
            if e["message"]["group_id"] == group_id
        ]
        self.assertEqual(final_ids, group_live)
        self.assertGreater(len(snapshots), 1)
        for snapshot in snapshots:
            if snapshot:
                newest = snapshot[-1]
                self.assertEqual(snapshot, [i for i in final_ids if i <= newest])


class SqliteOrderingTests(OrderingTestsMixin, ChatTestCase):
    """Ordering on the SQLite store."""

    backend = "sqlite"


class PostgresOrderingTests(OrderingTestsMixin, ChatTestCase):
    """Ordering on the PostgreSQL store."""

    backend = "postgres"
