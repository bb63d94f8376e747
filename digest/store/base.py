"""The connection: WAL, busy timeout, foreign keys, migrations, write transactions."""

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from digest.errors import DatabaseReplaced, MissingDatabase, StoreError
from digest.files import create_private, disk_full, is_disk_full, make_private_dir
from digest.store.migrations import migrations
from digest.store.sqlite import Database

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 16 * 1024


def _existing(path: Path, named_by: str) -> sqlite3.Connection:
    """A connection to ``path`` that never creates the file (SQLite's ``mode=rw``)."""
    if not path.is_file():
        raise MissingDatabase(
            f"no database at {path} ({named_by or 'the configured path'})",
            "check [storage] database, or create it with `digest migrate`",
        )
    try:
        return sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True)
    except sqlite3.OperationalError as err:
        raise MissingDatabase(f"cannot open the database {path}: {err}") from None


def iso(moment: datetime) -> str:
    """Timestamps are stored as sortable UTC ISO-8601 strings (time is always zone-aware here)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


IDENTITY_KEY = "database_id"


@dataclass(frozen=True, slots=True)
class Identity:
    """Which database this is: a random id kept inside it, and the file it lives in.

    The service takes it at start and checks it before each job, so a database
    deleted or replaced under it is an error until an operator acts, never a
    fresh empty one adopted in silence.
    """

    database_id: str
    device: int
    inode: int


class Base:
    """The connection, its pragmas, migrations and write transactions.

    ``create=True`` (``digest run``, ``ingest``, ``migrate`` and tests) makes the
    file if needed and applies pending migrations under the write lock.  Every
    other opening (``create=False``) takes an existing, up-to-date database as it
    is: no file is made, no lock is taken, nothing is written by opening it.
    """

    def __init__(self, path: Path, *, create: bool = True, named_by: str = "") -> None:
        self.path = path
        self._depth = 0  # how many write() blocks are open: only the outermost commits
        try:
            if create:
                make_private_dir(path.parent)
                create_private(path)  # SQLite gives its -wal and -shm files the same mode
                self.db = Database(path)
            else:
                self.db = Database(_existing(path, named_by))
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA foreign_keys = ON")
            # 16 MB rather than 2: the papers id index outgrows 2 MB at about 50,000
            # papers, and a big ingest then fetches it from the OS at every insert.
            self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self.db.execute("PRAGMA synchronous = FULL")  # every write() sets its own
            self._sync_mode = "FULL"
            if create:
                self._incremental_vacuum_if_new()
                self.db.enable_wal()
                self._migrate()
            else:
                self._check_schema()
        except sqlite3.DatabaseError as err:
            if is_disk_full(err, path):
                raise disk_full(path) from None
            raise StoreError(f"{path}: cannot open the database: {err}") from None
        except OSError as err:
            raise StoreError(f"{path}: cannot create the database folder: {err.strerror}") from None

    def _incremental_vacuum_if_new(self) -> None:
        """A new, empty file gets ``auto_vacuum = INCREMENTAL``: the pages that sent messages
        free can then be given back to the file system (``reclaim_free_pages``).  SQLite
        takes the setting only before the first table; an existing file keeps its own
        (the README's "Retention" says how to convert one with ``VACUUM``)."""
        if self.db.execute("PRAGMA page_count").fetchone()[0] == 0:
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")

    def _check_schema(self) -> None:
        """Refuse a database this code does not know, or one that needs migrating first."""
        self._refuse_newer()
        if migrations.pending(self.db):
            raise StoreError(
                f"{self.path}: the database needs migrating to this version of digest",
                "run `digest migrate` (or restart the service)",
            )

    def _refuse_newer(self) -> None:
        known = {m.name for m in migrations._migrations}
        unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
        if unknown:
            raise StoreError(
                f"{self.path}: the database was written by a newer digest "
                f"(unknown migrations: {', '.join(unknown)})",
                "upgrade digest before using this database",
            )

    def _migrate(self) -> None:
        """Apply pending migrations under the write lock; refuse a schema newer than this code."""
        with self._immediate(durable=True):
            self._refuse_newer()
            if migrations.pending(self.db):
                migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    def adopt_identity(self) -> Identity:
        """This database's identity, giving it a random id the first time (a write)."""
        with self.write():
            row = self.db.execute(
                "SELECT value FROM app_secrets WHERE name = ?", [IDENTITY_KEY]
            ).fetchone()
            if row is None:
                row = (uuid.uuid4().hex,)
                self.db.execute(
                    "INSERT INTO app_secrets (name, value) VALUES (?, ?)", [IDENTITY_KEY, row[0]]
                )
        return self._identity(str(row[0]))

    def check_identity(self, expected: Identity) -> None:
        """Raise DatabaseReplaced unless this is the database ``expected`` describes."""
        row = self.db.execute(
            "SELECT value FROM app_secrets WHERE name = ?", [IDENTITY_KEY]
        ).fetchone()
        found = self._identity(str(row[0]) if row else "")
        if found != expected:
            raise DatabaseReplaced(
                f"{self.path} is not the database this service opened (its file or id changed: "
                "deleted, restored or replaced while running)",
                "restore the right file, or restart the service to adopt this one",
            )

    def _identity(self, database_id: str) -> Identity:
        try:
            found = self.path.stat()
        except OSError as err:
            raise DatabaseReplaced(f"{self.path}: {err.strerror}") from None
        return Identity(database_id, found.st_dev, found.st_ino)

    @contextmanager
    def _immediate(self, durable: bool) -> Iterator[None]:
        """A full disk (SQLite's "database or disk is full", ENOSPC) is rolled back and
        raised as one ``DiskFull`` line naming the database and the free space."""
        try:
            self._synchronous("FULL" if durable else "NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.conn.rollback()
                raise
            self.db.execute("COMMIT")
        except (sqlite3.OperationalError, OSError) as err:
            if not is_disk_full(err, self.path):
                raise
            if self.db.conn.in_transaction:
                self.db.conn.rollback()
            raise disk_full(self.path) from None

    def _synchronous(self, mode: str) -> None:
        """Set how the next commits wait for the disk, only when it changes: a PRAGMA per
        transaction was a third of the time a delivery's claims and marks took."""
        if self._sync_mode != mode:
            self.db.execute(f"PRAGMA synchronous = {mode}")
            self._sync_mode = mode

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[None]:
        """One all-or-nothing write transaction, taken with the write lock held from the start.

        Re-entrant: inside another ``write()`` it joins that transaction (a savepoint), so
        the outermost one commits everything or nothing, and an error the caller catches
        undoes only the inner block's writes (``record_digest`` skipping a taken digest).

        ``durable=False`` commits without waiting for the disk (WAL, ``synchronous =
        NORMAL``): a crash of the process loses nothing, a power cut may undo the
        transaction until the next durable commit or checkpoint, which writes it too.
        """
        self._depth += 1
        try:
            with self._savepoint() if self._depth > 1 else self._immediate(durable):
                yield
        finally:
            self._depth -= 1

    def make_durable(self) -> None:
        """Write every commit so far to the disk (a checkpoint of the WAL into the file)."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        name = f"write_{self._depth}"
        self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self.db.conn.in_transaction:  # some errors (a full disk) end it all at once
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
            raise
        self.db.execute(f"RELEASE {name}")

    def count(self, table: str) -> int:
        return self.db[table].count if self.db[table].exists() else 0
