"""The SQLite backend: transaction scripts run in adbapi's single thread.

One connection in one thread serialises every transaction, which is what
SQLite wants anyway and gives message ids in commit order for free. The
database runs in WAL mode with ``synchronous=FULL``, so a commit that was
answered survives a killed process (and a power cut).
"""

import sqlite3
from typing import Any

from twisted.enterprise import adbapi
from twisted.logger import Logger

from chatd.storage.database import Rows, ScriptFactory, Statement, drive_sync


def _prepare_connection(connection: sqlite3.Connection) -> None:
    """Set the pragmas every chatd connection needs."""
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA busy_timeout = 5000")


class SqliteDatabase:
    """Run transaction scripts on an SQLite file through adbapi.

    Args:
        path: The database file; created when missing.
    """

    _log = Logger()
    dialect = "sqlite"

    def __init__(self, path: str):
        self._path = path
        self._pool: adbapi.ConnectionPool | None = None

    async def start(self) -> None:
        """Open the pool (one connection, one thread)."""
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            self._path,
            check_same_thread=False,
            isolation_level=None,
            cp_min=1,
            cp_max=1,
            cp_openfun=_prepare_connection,
            cp_noisy=False,
        )
        self._pool.start()
        self._log.info("SQLite store opened at {path}", path=self._path)

    async def run(self, name: str, script: ScriptFactory, *args: Any) -> Any:
        """Run ``script(*args)`` as one transaction in the database thread."""
        return await self._pool.runInteraction(self._transaction, script, args)

    async def run_one(self, name: str, statement: Statement) -> Rows:
        """Run one statement as its own transaction and return its rows."""
        return await self.run(name, _single, statement)

    @staticmethod
    def _transaction(transaction: adbapi.Transaction, script, args) -> Any:
        """Drive the script between BEGIN and adbapi's COMMIT or ROLLBACK."""

        def execute(statement: Statement) -> Rows:
            transaction.execute(statement.sql, statement.params)
            return transaction.fetchall() if transaction.description else []

        transaction.execute("BEGIN IMMEDIATE")
        return drive_sync(script(*args), execute)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _single(statement: Statement):
    """A transaction script of one statement."""
    rows = yield statement
    return rows
