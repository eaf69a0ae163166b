"""The PostgreSQL backend: transaction scripts driven over txpostgres.

Each connection of the pool has a dead-connection detector, so when the
server goes away the connection reconnects by itself in the background while
requests fail fast with ``DatabaseUnavailable``; once the server is back the
store serves again without a restart.
"""

from typing import Any

import psycopg2
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from txpostgres import reconnection, txpostgres

from chatd.storage.database import (
    DatabaseUnavailable,
    Rows,
    ScriptFactory,
    Statement,
)

_UNAVAILABLE = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    reconnection.ConnectionDead,
    txpostgres.RollbackFailed,
    defer.TimeoutError,
    defer.CancelledError,
)


def _to_pyformat(sql: str, cache: dict[str, str] = {}) -> str:  # noqa: B006
    """Rewrite ``?`` placeholders as psycopg2's ``%s`` (memoised per string)."""
    converted = cache.get(sql)
    if converted is None:
        converted = cache[sql] = sql.replace("%", "%%").replace("?", "%s")
    return converted


class _Detector(reconnection.DeadConnectionDetector):
    """Reconnect forever, and log when the connection is lost and regained."""

    _log = Logger()

    def startReconnecting(self, failure):  # noqa: N802 (txpostgres hook)
        """Log the loss once, then let txpostgres retry with backoff."""
        self._log.warn(
            "PostgreSQL connection lost ({error}); reconnecting",
            error=failure.getErrorMessage(),
        )
        return super().startReconnecting(failure)

    def connectionRecovered(self):  # noqa: N802 (txpostgres hook)
        """Log the recovery."""
        self._log.info("PostgreSQL connection recovered")
        return super().connectionRecovered()


class _Pool(txpostgres.ConnectionPool):
    """A txpostgres pool on a given reactor whose connections reconnect."""

    def __init__(self, reactor: Any, *args: Any, **kwargs: Any):
        self.reactor = reactor
        super().__init__(None, *args, **kwargs)

    def connectionFactory(self, reactor, cooperator):  # noqa: N802 (txpostgres hook)
        """Make a pooled connection with a dead-connection detector."""
        detector = _Detector(reactor=reactor)
        return txpostgres.Connection(reactor, cooperator, detector=detector)


class PostgresDatabase:
    """Run transaction scripts on PostgreSQL through a txpostgres pool.

    Args:
        dsn: A libpq connection string.
        pool_size: How many connections to keep open.
        timeout: Seconds a transaction may take before it fails as
            unavailable.
        reactor: The reactor to run on.
    """

    _log = Logger()
    dialect = "postgres"

    def __init__(self, dsn: str, pool_size: int, timeout: float, reactor: Any):
        self._dsn = dsn
        self._pool_size = pool_size
        self._timeout = timeout
        self._reactor: IReactorTime = reactor
        self._pool: txpostgres.ConnectionPool | None = None

    async def start(self) -> None:
        """Open every connection of the pool."""
        pool = _Pool(self._reactor, self._dsn, min=self._pool_size)
        try:
            await pool.start()
        except defer.FirstError as error:
            pool.close()
            reason = error.subFailure.getErrorMessage().strip()
            raise DatabaseUnavailable(reason.splitlines()[0]) from None
        self._pool = pool
        self._log.info(
            "PostgreSQL store connected with {size} connections", size=self._pool_size
        )

    async def run(self, name: str, script: ScriptFactory, *args: Any) -> Any:
        """Run ``script(*args)`` in one transaction on a pooled connection."""
        if self._pool is None:
            raise DatabaseUnavailable("the store is not started")
        deferred = self._pool.runInteraction(self._interaction, script, args)
        if self._timeout > 0:
            deferred.addTimeout(self._timeout, self._reactor)
        try:
            return await deferred
        except _UNAVAILABLE as error:
            raise DatabaseUnavailable(f"{name}: {error}".strip()) from None

    async def run_one(self, name: str, statement: Statement) -> Rows:
        """Run one statement on its own (atomic, one round trip) and return
        its rows."""
        if self._pool is None:
            raise DatabaseUnavailable("the store is not started")
        deferred = self._pool.runQuery(_to_pyformat(statement.sql), statement.params)
        if self._timeout > 0:
            deferred.addTimeout(self._timeout, self._reactor)
        try:
            return await deferred
        except _UNAVAILABLE as error:
            raise DatabaseUnavailable(f"{name}: {error}".strip()) from None

    @staticmethod
    def _interaction(cursor: txpostgres.Cursor, script, args) -> defer.Deferred:
        """Bridge txpostgres's callback interaction to the script driver."""
        return defer.Deferred.fromCoroutine(_drive(cursor, script(*args)))

    async def close(self) -> None:
        """Close every connection."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


async def _drive(cursor: txpostgres.Cursor, script) -> Any:
    """Run a transaction script statement by statement on one cursor."""
    rows: Rows | None = None
    try:
        statement = script.send(None)
        while True:
            await cursor.execute(_to_pyformat(statement.sql), statement.params)
            rows = cursor.fetchall() if cursor.description else []
            statement = script.send(rows)
    except StopIteration as stop:
        return stop.value
