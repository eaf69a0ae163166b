"""The single message writer: group commit, one batch at a time."""

from twisted.internet import defer
from twisted.trial import unittest

from chatd.storage.records import NewMessage, WriteResult
from chatd.storage.writer import MessageWriter


class _GatedStore:
    """A store whose write_messages waits until the test releases it."""

    def __init__(self):
        self.batches: list[list[NewMessage]] = []
        self.gates: list[defer.Deferred] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def write_messages(self, batch):
        self.batches.append(batch)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        gate = defer.Deferred()
        self.gates.append(gate)
        try:
            await gate
        finally:
            self.in_flight -= 1
        return [WriteResult("created") for _ in batch]


def message(n: int) -> NewMessage:
    return NewMessage(1, 2, None, f"m{n}", 0, None)


class MessageWriterTests(unittest.TestCase):
    """Batching and ordering."""

    def test_arrivals_during_a_write_share_the_next_batch(self):
        """The first message goes alone; those that arrive while it is
        written go together, in order; never two transactions at once."""
        store = _GatedStore()
        writer = MessageWriter(store, max_batch=100)
        waiters = [writer.write(message(0))]
        waiters += [writer.write(message(n)) for n in range(1, 5)]
        self.assertEqual([len(b) for b in store.batches], [1])
        self.assertEqual(writer.pending, 4)

        store.gates[0].callback(None)
        self.assertTrue(waiters[0].called)
        self.assertEqual([len(b) for b in store.batches], [1, 4])
        self.assertEqual(
            [m.content for m in store.batches[1]], ["m1", "m2", "m3", "m4"]
        )
        store.gates[1].callback(None)
        self.assertTrue(all(w.called for w in waiters))
        self.assertEqual(store.most_in_flight, 1)

    def test_next_batch_starts_before_waiters_are_told(self):
        """The database gets batch N+1 before the waiters of batch N run,
        so that it works while the reactor answers batch N."""
        store = _GatedStore()
        writer = MessageWriter(store, max_batch=100)
        first = writer.write(message(0))
        writer.write(message(1))
        started_when_told = []
        first.addCallback(lambda _: started_when_told.append(len(store.batches)))
        store.gates[0].callback(None)
        self.assertEqual(started_when_told, [2])

    def test_batches_are_capped(self):
        """No batch exceeds max_batch."""
        store = _GatedStore()
        writer = MessageWriter(store, max_batch=3)
        for n in range(8):
            writer.write(message(n))
        while len(store.gates) > len([g for g in store.gates if g.called]):
            store.gates[-1].callback(None)
        self.assertEqual([len(b) for b in store.batches], [1, 3, 3, 1])

    def test_failure_fails_its_batch_only(self):
        """A failed transaction fails the messages in it; the next batch is
        written normally."""

        class FlakyStore(_GatedStore):
            async def write_messages(self, batch):
                if not self.batches:
                    self.batches.append(batch)
                    raise ConnectionError("database went away")
                self.batches.append(batch)
                return [WriteResult("created") for _ in batch]

        writer = MessageWriter(FlakyStore(), max_batch=10)
        first = writer.write(message(0))
        self.failureResultOf(first, ConnectionError)
        self.assertEqual(
            self.successResultOf(writer.write(message(1))).outcome, "created"
        )
