"""Numbered migrations, applied at start-up and recorded in schema_version.

The files live in ``migrations/<dialect>/NNNN_name.sql``; each opens with a
comment saying why it exists. All pending files are applied in one
transaction, so a failed upgrade leaves the schema as it was.
"""

import re
from importlib import resources

from chatd.storage.database import Script, Statement

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")
_ADVISORY_LOCK_KEY = 7263001


def load_migrations(dialect: str) -> list[tuple[int, str, list[str]]]:
    """Read the migration files of a dialect as (version, name, statements)."""
    folder = resources.files("chatd.storage") / "migrations" / dialect
    migrations = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        statements = split_statements(entry.read_text(encoding="utf-8"))
        migrations.append((int(match["version"]), match["name"], statements))
    return sorted(migrations)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements, dropping ``--`` comment lines."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def migrate(
    dialect: str, migrations: list[tuple[int, str, list[str]]], now: int
) -> Script:
    """Apply every migration newer than the recorded version.

    Returns:
        The version before and the versions applied.
    """
    yield Statement(
        """
        CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )
        """
    )
    if dialect == "postgres":
        # Two nodes starting together must not both upgrade.
        yield Statement("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK_KEY,))

    rows = yield Statement("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    current = rows[0][0]
    applied = []
    for version, name, statements in migrations:
        if version <= current:
            continue
        for sql in statements:
            yield Statement(sql)
        yield Statement(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (version, name, now),
        )
        applied.append(version)
    return current, applied
