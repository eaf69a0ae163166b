"""The PostgreSQL backend: transaction scripts driven over txpostgres.

Each connection of the pool has a dead-connection detector, so when the
server goes away the connection reconnects by itself in the background while
requests fail fast with ``DatabaseUnavailable``; once the server is back the
store serves again without a restart.
"""

import hashlib
from typing import Any

import psycopg2
import psycopg2.errors
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, retrying, txpostgres

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


def _is_dead(failure: Failure) -> bool:
    """Whether an error means the connection is gone. psycopg2 files an
    unknown prepared statement (a new server session) under
    OperationalError, but the connection works and the statement is simply
    prepared again."""
    if failure.check(psycopg2.errors.InvalidSqlStatementName):
        return False
    return bool(reconnection.defaultDeathChecker(failure))


class _Detector(reconnection.DeadConnectionDetector):
    """Reconnect forever with capped backoff, log when the connection is
    lost and regained, and stop retrying when the pool closes.

    Args:
        reactor: The reactor the retries wait on.
        max_delay: The most seconds between two reconnection attempts.
    """

    _log = Logger()

    def __init__(self, reactor: Any, max_delay: float):
        super().__init__(deathChecker=_is_dead, reactor=reactor)
        self._max_delay = max_delay
        self._retrying: defer.Deferred | None = None

    def startReconnecting(self, failure):  # noqa: N802 (txpostgres hook)
        """Log the loss once, then retry with backoff until it works."""
        self._log.warn(
            "PostgreSQL connection lost ({error}); reconnecting",
            error=failure.getErrorMessage().strip(),
        )
        call = retrying.RetryingCall(self.reconnect)
        call.reactor = self.reactor
        backoff = retrying.simpleBackoffIterator(
            initialDelay=min(0.5, self._max_delay),
            maxDelay=self._max_delay,
            factor=1.7,
            maxRetries=0,
            now=True,
        )
        self._retrying = call.start(backoff)
        self._retrying.addCallback(lambda _: self.connectionRecovered())
        self._retrying.addErrback(self._gave_up)

    def _gave_up(self, failure) -> None:
        self._retrying = None
        if not failure.check(defer.CancelledError):
            self._log.failure("PostgreSQL reconnection failed", failure)

    def connectionRecovered(self):  # noqa: N802 (txpostgres hook)
        """Log the recovery."""
        self._retrying = None
        self._log.info("PostgreSQL connection recovered")
        return super().connectionRecovered()

    def stop(self) -> None:
        """Stop reconnecting (the pool is closing)."""
        if self._retrying is not None:
            try:
                self._retrying.cancel()
            except psycopg2.Error:
                # A connection attempt in progress cannot be cancelled; it
                # is dropped with the pool.
                pass


class _Connection(txpostgres.Connection):
    """A pooled connection that takes the server's going away quietly, and
    remembers which statements it has prepared."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: Names of the statements prepared in the current server session.
        self.prepared: set[str] = set()

    def doRead(self):  # noqa: N802 (IReadDescriptor)
        """txpostgres's ``doRead``, but when the server closed an idle
        connection the loss goes to the detector instead of raising into the
        reactor, and a connection whose socket is already gone (a failed
        reconnection attempt) is not watched again."""
        try:
            txpostgres._PollingMixin.doRead(self)
        except psycopg2.Error as error:
            self.connectionLost(Failure(error))
            return
        self.checkForNotifies()
        if not self._connection.closed and self._connection.fileno() >= 0:
            self.reactor.addReader(self)


class _Pool(txpostgres.ConnectionPool):
    """A txpostgres pool on a given reactor whose connections reconnect,
    and which hands out a live connection whenever it has one."""

    def __init__(self, reactor: Any, reconnect_max_delay: float, *args, **kwargs):
        self.reactor = reactor
        self._reconnect_max_delay = reconnect_max_delay
        super().__init__(None, *args, **kwargs)

    def connectionFactory(self, reactor, cooperator):  # noqa: N802 (txpostgres hook)
        """Make a pooled connection with a dead-connection detector."""
        detector = _Detector(reactor, self._reconnect_max_delay)
        return _Connection(reactor, cooperator, detector=detector)

    def _take(self) -> txpostgres.Connection:
        """Take a connection out of the pool, preferring one that is not
        known to be dead, so that one dead connection does not fail
        requests while another one works."""
        for connection in self.connections:
            if not connection.detector.connectionIsDead:
                self.connections.remove(connection)
                return connection
        return self.connections.pop()

    def _runInteraction(self, interaction, *args, **kwargs):  # noqa: N802
        """Like txpostgres's, on a live connection when there is one."""
        connection = self._take()
        deferred = connection.runInteraction(interaction, *args, **kwargs)
        return deferred.addBoth(self._putBackAndPassthrough, connection)

    def _runQuery(self, *args, **kwargs):  # noqa: N802
        """Like txpostgres's, on a live connection when there is one."""
        connection = self._take()
        deferred = connection.runQuery(*args, **kwargs)
        return deferred.addBoth(self._putBackAndPassthrough, connection)

    def _runOperation(self, *args, **kwargs):  # noqa: N802
        """Like txpostgres's, on a live connection when there is one."""
        connection = self._take()
        deferred = connection.runOperation(*args, **kwargs)
        return deferred.addBoth(self._putBackAndPassthrough, connection)

    def runPrepared(self, sql: str, params) -> defer.Deferred:  # noqa: N802
        """Run a statement as a prepared one on a pooled connection."""
        return self._semaphore.run(self._run_prepared, sql, params)

    def _run_prepared(self, sql: str, params) -> defer.Deferred:
        connection = self._take()
        deferred = defer.Deferred.fromCoroutine(
            _execute_prepared(connection, sql, params)
        )
        return deferred.addBoth(self._putBackAndPassthrough, connection)

    def close(self):
        """Stop every reconnection in progress, then close."""
        for connection in self.connections:
            connection.detector.stop()
        return super().close()


class PostgresDatabase:
    """Run transaction scripts on PostgreSQL through a txpostgres pool.

    Args:
        dsn: A libpq connection string.
        pool_size: How many connections to keep open.
        timeout: Seconds a transaction may take before it fails as
            unavailable.
        reactor: The reactor to run on.
        reconnect_max_delay: The most seconds between two attempts to
            reconnect while the server is away.
    """

    _log = Logger()
    dialect = "postgres"

    def __init__(
        self,
        dsn: str,
        pool_size: int,
        timeout: float,
        reactor: Any,
        reconnect_max_delay: float = 5.0,
    ):
        self._dsn = dsn
        self._reconnect_max_delay = reconnect_max_delay
        self._pool_size = pool_size
        self._timeout = timeout
        self._reactor: IReactorTime = reactor
        self._pool: txpostgres.ConnectionPool | None = None

    async def start(self) -> None:
        """Open every connection of the pool."""
        pool = _Pool(
            self._reactor, self._reconnect_max_delay, self._dsn, min=self._pool_size
        )
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
        its rows. It runs as a prepared statement, so that PostgreSQL plans
        it once per connection rather than at every call."""
        if self._pool is None:
            raise DatabaseUnavailable("the store is not started")
        deferred = self._pool.runPrepared(statement.sql, statement.params)
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


_PREPARED_FORMS: dict[tuple[str, int], tuple[str, str, str]] = {}


def _prepared_forms(sql: str, count: int) -> tuple[str, str, str]:
    """The name, PREPARE and EXECUTE texts of a statement with ``count``
    ``?`` placeholders (memoised)."""
    forms = _PREPARED_FORMS.get((sql, count))
    if forms is None:
        name = "chatd_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
        parts = sql.split("?")
        numbered = parts[0] + "".join(
            f"${n}{part}" for n, part in enumerate(parts[1:], start=1)
        )
        execute = f"EXECUTE {name} ({', '.join(['%s'] * count)})"
        # A generic plan: the statements prepared here take their batch as
        # arrays, so planning them again for every call would gain nothing.
        forms = _PREPARED_FORMS[(sql, count)] = (
            name,
            f"SET plan_cache_mode = force_generic_plan; PREPARE {name} AS {numbered}",
            execute,
        )
    return forms


async def _execute_prepared(connection: _Connection, sql: str, params) -> Rows:
    """Execute a statement prepared on this connection, preparing it first
    when this server session has not seen it (a new or reconnected one)."""
    name, prepare, execute = _prepared_forms(sql, len(params))
    for attempt in (1, 2):
        if name not in connection.prepared:
            await connection.runOperation(prepare)
            connection.prepared.add(name)
        try:
            return await connection.runQuery(execute, params)
        except psycopg2.errors.InvalidSqlStatementName:
            # The connection was re-established: its server session is new.
            connection.prepared.clear()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
