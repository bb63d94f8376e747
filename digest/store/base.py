"""The connection: WAL, busy timeout, foreign keys, migrations, write transactions."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from digest.errors import StoreError
from digest.store.migrations import migrations

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 16 * 1024


def iso(moment: datetime) -> str:
    """Timestamps are stored as sortable UTC ISO-8601 strings (time is always zone-aware here)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Base:
    """The connection, its pragmas, migrations and write transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = Database(path)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA foreign_keys = ON")
            # 16 MB rather than 2: the papers id index outgrows 2 MB at about 50,000
            # papers, and a big ingest then fetches it from the OS at every insert.
            self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self.db.enable_wal()
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path}: cannot open the database: {err}") from None
        except OSError as err:
            raise StoreError(f"{path}: cannot create the database folder: {err.strerror}") from None

    def _migrate(self) -> None:
        """Apply pending migrations under the write lock; refuse a schema newer than this code."""
        with self._immediate():
            known = {m.name for m in migrations._migrations}
            unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
            if unknown:
                raise StoreError(
                    f"{self.path}: the database was written by a newer digest "
                    f"(unknown migrations: {', '.join(unknown)})",
                    "upgrade digest before using this database",
                )
            if migrations.pending(self.db):
                migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.conn.rollback()
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[None]:
        """One all-or-nothing write transaction, taken with the write lock held from the start."""
        with self._immediate():
            yield

    def count(self, table: str) -> int:
        return self.db[table].count if self.db[table].exists() else 0
