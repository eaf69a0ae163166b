"""The single writer of messages: group commit in arrival order.

Ids drawn from a sequence by concurrent transactions can commit out of
order, and a delivery cursor that passed id 101 would never deliver a late
100. So exactly one transaction writes messages at a time: whatever arrives
while it runs waits and goes, all together, into the next one. That gives
ids in commit order and one commit for many messages under load.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.storage.records import NewMessage, WriteResult
from chatd.storage.store import Store


# FIXME: one writer per process; several nodes on one PostgreSQL would each
# have one, and need a database-side lock to keep ids in commit order.
class MessageWriter:
    """Queue messages and write them in batches, one batch at a time.

    Args:
        store: Where messages go.
        max_batch: The most messages in one transaction.
    """

    _log = Logger()

    def __init__(self, store: Store, max_batch: int):
        self._store = store
        self._max_batch = max_batch
        self._queue: list[tuple[NewMessage, Deferred]] = []
        self._writing = False

    @property
    def pending(self) -> int:
        """How many messages wait for the next batch."""
        return len(self._queue)

    def write(self, message: NewMessage) -> Deferred:
        """Queue a message; the Deferred fires with its ``WriteResult`` once
        the batch holding it is committed, or fails with the batch."""
        waiter: Deferred = Deferred()
        self._queue.append((message, waiter))
        if not self._writing:
            self._writing = True
            Deferred.fromCoroutine(self._drain()).addErrback(self._crashed)
        return waiter

    async def _drain(self) -> None:
        """Write batches until the queue is empty.

        As soon as one batch is committed the next one is sent to the
        database, before the waiters of the first are told: the database
        works on batch N+1 while the reactor builds the replies and events
        of batch N. Only one transaction is ever in progress.
        """
        try:
            current = self._start_batch()
            while current is not None:
                batch, running = current
                try:
                    results: list[WriteResult] = await running
                except Exception as error:
                    current = self._start_batch()
                    for _, waiter in batch:
                        waiter.errback(error)
                    continue
                current = self._start_batch()
                for (_, waiter), result in zip(batch, results, strict=True):
                    waiter.callback(result)
        finally:
            self._writing = False

    def _start_batch(self):
        """Take the next batch off the queue and start its transaction."""
        if not self._queue:
            return None
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        running = Deferred.fromCoroutine(
            self._store.write_messages([message for message, _ in batch])
        )
        return batch, running

    def _crashed(self, failure) -> None:
        """Log a bug in the writer loop itself; the next write restarts it."""
        self._log.failure("Message writer loop failed", failure)
