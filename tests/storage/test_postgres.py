"""The PostgreSQL backend's own behaviour: prepared statements."""

from twisted.internet import reactor
from twisted.trial import unittest

from chatd.storage.database import Statement
from chatd.storage.postgres import PostgresDatabase
from tests.support import create_postgres_database


def _deallocate_all():
    yield Statement("DEALLOCATE ALL")


class PreparedStatementTests(unittest.TestCase):
    """run_one prepares once per server session and survives losing it."""

    async def setUp(self):
        dsn = create_postgres_database(self)
        self.database = PostgresDatabase(dsn, 1, 5.0, reactor)
        await self.database.start()
        self.addCleanup(self.database.close)

    async def test_prepared_again_when_the_session_forgot(self):
        """After the server forgets the statement (as after a reconnect),
        the next call prepares it again, answers, and the connection is not
        taken for dead."""
        statement = Statement("SELECT ?::int + 1, ?::text", (41, "x"))
        self.assertEqual(await self.database.run_one("add", statement), [(42, "x")])
        await self.database.run("forget", _deallocate_all)
        self.assertEqual(await self.database.run_one("add", statement), [(42, "x")])
        (connection,) = self.database._pool.connections
        self.assertFalse(connection.detector.connectionIsDead)
        self.assertEqual(len(connection.prepared), 1)
