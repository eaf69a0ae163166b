"""What the store needs of a database: run a transaction script, atomically.

A transaction script is a generator that yields ``Statement`` objects and is
sent back each statement's rows (a list of tuples, empty when the statement
returns none). The script holds the SQL and the logic between statements;
the backend decides how to run it: SQLite drives it synchronously inside
adbapi's thread, PostgreSQL drives it asynchronously over txpostgres. So one
body of SQL serves both backends, and a whole transaction is one unit that
either commits or leaves nothing behind.

SQL is written with ``?`` placeholders; the PostgreSQL backend rewrites them.
"""

from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Rows = list[tuple]


class Statement:
    """One SQL statement and its parameters."""

    __slots__ = ("sql", "params")

    def __init__(self, sql: str, params: tuple | list = ()):
        self.sql = sql
        self.params = tuple(params)


Script = Generator[Statement, Rows, T]
ScriptFactory = Callable[..., Script]


class DatabaseUnavailable(Exception):
    """The database cannot be reached, or did not answer in time."""


class Database(Protocol):
    """A backend that runs transaction scripts."""

    dialect: str

    async def start(self) -> None:
        """Connect; raise ``DatabaseUnavailable`` when that fails."""

    async def run(self, name: str, script: ScriptFactory, *args: Any) -> Any:
        """Run ``script(*args)`` in one transaction and return its result."""

    async def run_one(self, name: str, statement: Statement) -> Rows:
        """Run a single statement atomically, in as few round trips as the
        backend allows, and return its rows."""

    async def close(self) -> None:
        """Release every connection."""


def drive_sync(script: Script, execute: Callable[[Statement], Rows]) -> Any:
    """Run a transaction script to its end with a blocking ``execute``."""
    try:
        statement = next(script)
        while True:
            statement = script.send(execute(statement))
    except StopIteration as stop:
        return stop.value
