"""The store's one rule of transactions (``digest/store/__init__.py``), held to every method.

Every public method of ``Store`` is listed below with a call that does something on
a store holding a bit of everything.  A method that writes must do it in one
``BEGIN IMMEDIATE`` ... ``COMMIT`` of its own, and inside a caller's ``write()``
must join that transaction (so the caller's rollback undoes it); a method that
reads must write nothing.  The statements are seen as SQLite runs them (its trace
callback), not as the code spells them.  A public method added without an entry
here fails the first test, so the rule cannot go stale.
"""

import inspect
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.errors import DatabaseReplaced
from digest.models import Entry
from digest.store import DumpCounts, Identity, SourceState, Store, iso

from .conftest import NOW, copy_database

STAMP = iso(NOW)
OLD = "2026-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class World:
    """What the calls below act on: ids of rows in each state a write method changes."""

    ada: int  # active; every digest below is hers
    bo: int  # active, with nothing else
    queued: int
    sending: int
    deferred: int
    failed: int  # built long ago: its bytes are past the retry window
    sent: int
    run: int  # a run not finished yet
    free_seq: int  # a paper in no digest
    liked_seq: int  # a paper ada said "more like this" of
    dump: int


def fields(email: str) -> dict[str, Any]:
    return {
        "email": email,
        "filter": "diffusion",
        "secret": f"secret-of-{email}",
        "created_at": OLD,
        "updated_at": OLD,
    }


def message_id(subscriber_id: int, n: int) -> str:
    return f"<digest.{subscriber_id}.{n:016x}@example.org>"


def build_world(store: Store) -> World:
    """Subscribers, a digest in each state, job runs, a rejection: made through the store."""
    ada = store.insert_subscriber(fields("ada@example.org")).id
    bo = store.insert_subscriber(fields("bo@example.org")).id
    seqs = store.trending_seqs(6)

    def digest(n: int, created_at: str = STAMP) -> int:
        found = store.record_digest(
            ada, message_id(ada, n), max(seqs), [seqs[n]], 0, b"a digest", created_at
        )
        assert found is not None
        return found

    def claimed(n: int, created_at: str = STAMP) -> int:
        found = digest(n, created_at)
        assert store.claim(found, 1)
        return found

    deferred, failed, sent = claimed(2), claimed(3, OLD), claimed(4)
    store.mark_deferred(deferred, "busy", STAMP)
    store.mark_failed(failed, ada, "refused", bounce_limit=None)
    store.mark_sent(sent, ada, STAMP)
    for _ in range(2):
        store.finish_run(store.start_run("deliver", OLD, OLD), OLD, "done")
    store.add_rejection("bad.txt", "0" * 64, "not a dump", datetime(2026, 1, 1, tzinfo=UTC))
    store.set_feedback(ada, seqs[0], "more", OLD)
    return World(
        ada=ada,
        bo=bo,
        queued=digest(0),
        sending=claimed(1),
        deferred=deferred,
        failed=failed,
        sent=sent,
        run=store.start_run("deliver", STAMP, STAMP),
        free_seq=seqs[5],
        liked_seq=seqs[0],
        dump=store.version()[1],
    )


@pytest.fixture(scope="session")
def world_database(
    seeded_database: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, World]:
    """The seeds and the world, built once; each test works on its own copy."""
    path = copy_database(seeded_database, tmp_path_factory.mktemp("world"))
    with closing(Store(path)) as store:
        made = build_world(store)
    return path, made


@pytest.fixture
def world(world_database: tuple[Path, World]) -> World:
    return world_database[1]


@pytest.fixture
def store(tmp_path: Path, world_database: tuple[Path, World]) -> Iterator[Store]:
    """The test's own copy of the seeded store with the world in it."""
    with closing(Store(copy_database(world_database[0], tmp_path))) as opened:
        yield opened


Call = Callable[[Store, World], object]
NEW_PAPER = Entry.of(999, "A paper only this test knows", "Its abstract.", 1)

WRITES: dict[str, Call] = {
    "add_dump": lambda s, w: s.add_dump("late.txt", "f" * 64, NOW),
    "add_entries": lambda s, w: s.add_entries(w.dump, [[NEW_PAPER]], NOW),
    "finish_dump": lambda s, w: s.finish_dump(w.dump, "2026-12-31", DumpCounts(1, 1, 0)),
    "add_rejection": lambda s, w: s.add_rejection("worse.txt", "1" * 64, "empty", NOW),
    "adopt_identity": lambda s, w: s.adopt_identity(),
    "app_secret": lambda s, w: s.app_secret("test", lambda: "made"),
    "insert_subscriber": lambda s, w: s.insert_subscriber(fields("cy@example.org")),
    "update_subscriber": lambda s, w: s.update_subscriber(w.ada, {"name": "Ada"}),
    "delete_subscriber": lambda s, w: s.delete_subscriber(w.bo),
    "add_event": lambda s, w: s.add_event(w.ada, "pause", "operator", "active", "paused", at=None),
    "record_digest": lambda s, w: s.record_digest(
        w.bo, message_id(w.bo, 9), w.free_seq, [w.free_seq], 0, b"another", STAMP
    ),
    "record_failed_digest": lambda s, w: s.record_failed_digest(
        w.bo, message_id(w.bo, 10), w.free_seq, "no template", STAMP
    ),
    "claim": lambda s, w: s.claim(w.queued, 2),
    "mark_and_claim": lambda s, w: s.mark_and_claim(
        [(w.sending, w.ada, STAMP)], [w.queued], 2, durable=False
    ),
    "mark_sent": lambda s, w: s.mark_sent(w.sending, w.ada, STAMP),
    "mark_deferred": lambda s, w: s.mark_deferred(w.sending, "busy", STAMP),
    "mark_failed": lambda s, w: s.mark_failed(w.sending, w.ada, "no such user", bounce_limit=1),
    "release": lambda s, w: s.release(w.sending),
    "hold": lambda s, w: s.hold(w.sending, "too big for now", STAMP),
    "requeue": lambda s, w: s.requeue([w.sending]),
    "make_due": lambda s, w: s.make_due([w.deferred], "2026-11-24T06:00:00Z"),
    "requeue_failed": lambda s, w: s.requeue_failed([w.failed]),
    "prune_job_runs": lambda s, w: s.prune_job_runs(STAMP, dry_run=False),
    "prune_rejections": lambda s, w: s.prune_rejections(STAMP, dry_run=False),
    "prune_messages": lambda s, w: s.prune_messages(STAMP, dry_run=False),
    "start_run": lambda s, w: s.start_run("prune", STAMP, STAMP),
    "save_source_state": lambda s, w: s.save_source_state(SourceState("hf", failures=1)),
    "finish_run": lambda s, w: s.finish_run(w.run, STAMP, "sent 1"),
    "set_feedback": lambda s, w: s.set_feedback(w.ada, w.free_seq, "more", STAMP),
    "clear_feedback": lambda s, w: s.clear_feedback(w.ada, w.liked_seq),
    "save_model": lambda s, w: s.save_model(
        STAMP, 1, (b"t", b"i", b"c"), [(w.ada, b"w", 3, 0)], [(w.liked_seq, b"v")]
    ),
}


def check_another_identity(store: Store, world: World) -> None:
    with pytest.raises(DatabaseReplaced):
        store.check_identity(Identity("another", 0, 0))


READS: dict[str, Call] = {
    "source_state": lambda s, w: s.source_state("hf"),
    "feedback": lambda s, w: s.feedback(w.ada),
    "verdict": lambda s, w: s.verdict(w.ada, w.liked_seq),
    "all_feedback": lambda s, w: s.all_feedback(),
    "model_fitted_at": lambda s, w: s.model_fitted_at(),
    "model_corpus": lambda s, w: s.model_corpus(),
    "model_readers": lambda s, w: s.model_readers([w.ada]),
    "judged_vectors": lambda s, w: s.judged_vectors(w.ada),
    "model_vectors": lambda s, w: s.model_vectors(),
    "rejection_by_hash": lambda s, w: s.rejection_by_hash("1" * 64),
    "source_states": lambda s, w: s.source_states(),
    "check_identity": check_another_identity,
    "count": lambda s, w: s.count("papers"),
    "delivered_since": lambda s, w: s.delivered_since(0),
    "delivery": lambda s, w: s.delivery(w.ada, w.free_seq),
    "digest_by_mark": lambda s, w: s.digest_by_mark(w.ada, "0" * 16),
    "digest_counts": lambda s, w: s.digest_counts(),
    "dump_by_hash": lambda s, w: s.dump_by_hash("0" * 64),
    "events": lambda s, w: s.events(w.ada),
    "failed_since": lambda s, w: s.failed_since(OLD),
    "last_delivery_run": lambda s, w: s.last_delivery_run(),
    "last_digest": lambda s, w: s.last_digest(w.ada),
    "last_digest_seqs": lambda s, w: s.last_digest_seqs(),
    "last_digest_time": lambda s, w: s.last_digest_time(w.ada),
    "last_digest_times": lambda s, w: s.last_digest_times(),
    "last_ingest_at": lambda s, w: s.last_ingest_at(),
    "last_scheduled": lambda s, w: s.last_scheduled("deliver"),
    "last_unsubscribe": lambda s, w: s.last_unsubscribe(w.ada),
    "max_seq": lambda s, w: s.max_seq(),
    "message": lambda s, w: s.message(w.queued),
    "outbox_rows": lambda s, w: s.outbox_rows(),
    "paper": lambda s, w: s.paper("diffusion"),
    "papers": lambda s, w: s.papers(since=NOW, limit=5, undelivered_to=w.ada),
    "ready_digests": lambda s, w: s.ready_digests(STAMP),
    "rejections_summary": lambda s, w: s.rejections_summary(),
    "retry_candidates": lambda s, w: s.retry_candidates(["failed"], OLD, w.ada),
    "sending_owners": lambda s, w: s.sending_owners(),
    "sightings": lambda s, w: s.sightings(w.free_seq),
    "status": lambda s, w: s.status(),
    "subscriber": lambda s, w: s.subscriber("ADA@example.org"),
    "subscriber_by_id": lambda s, w: s.subscriber_by_id(w.ada),
    "subscriber_by_secret": lambda s, w: s.subscriber_by_secret("secret-of-ada@example.org"),
    "subscriber_counts": lambda s, w: s.subscriber_counts(),
    "subscribers": lambda s, w: s.subscribers(["active"]),
    "trending_seqs": lambda s, w: s.trending_seqs(3),
    "used_bytes": lambda s, w: s.used_bytes(),
    "version": lambda s, w: s.version(),
    "waiting": lambda s, w: s.waiting(w.ada),
    "window_papers": lambda s, w: s.window_papers(None, NOW),
    "trending_chunks": lambda s, w: list(s.trending_chunks(since=NOW, chunk=2)),
    "paper_chunks": lambda s, w: list(s.paper_chunks(0, s.max_seq(), 2)),
    "first_seq_since": lambda s, w: s.first_seq_since(NOW),
    "days_matching": lambda s, w: s.days_matching('"model"', since=NOW),
}

# the transaction itself, the end of the connection, handing free pages back to the file
# system (a write transaction of its own that changes no row: tests/test_retention.py),
# and a checkpoint that writes what is committed to the disk (no row changes)
NEITHER = {"write", "close", "reclaim_free_pages", "make_durable"}

WRITE_VERBS = {"INSERT", "UPDATE", "DELETE", "REPLACE"}  # the store writes no WITH ... INSERT


@contextmanager
def recording(store: Store) -> Iterator[list[str]]:
    """Every statement SQLite runs on the store's connection meanwhile, in order."""
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store.db.conn.set_trace_callback(None)


def words(sql: str) -> list[str]:
    return sql.upper().replace(";", " ").split()


def ends_a_transaction(sql: str) -> bool:
    """BEGIN of any kind, COMMIT, END or a whole ROLLBACK (savepoints are not transactions)."""
    said = words(sql)
    return said[:1] in (["BEGIN"], ["COMMIT"], ["END"]) or said == ["ROLLBACK"]


def broken_rule(statements: list[str]) -> list[str]:
    """What in one standalone call breaks "one BEGIN IMMEDIATE ... COMMIT of its own,
    every write inside it"."""
    problems: list[str] = []
    transactions, inside, last_end = 0, False, ""
    for sql in statements:
        said = words(sql)
        if said[:2] == ["BEGIN", "IMMEDIATE"]:
            transactions, inside = transactions + 1, True
        elif said[:1] == ["BEGIN"]:
            problems.append(f"a deferred transaction, not BEGIN IMMEDIATE: {sql!r}")
        elif ends_a_transaction(sql):
            inside, last_end = False, said[0]
        elif said[:1] and said[0] in WRITE_VERBS and not inside:
            problems.append(f"a write outside BEGIN IMMEDIATE: {sql!r}")
    if transactions != 1:
        problems.append(f"{transactions} BEGIN IMMEDIATE, not one")
    if last_end != "COMMIT":
        problems.append(f"the transaction ends with {last_end or 'nothing'}, not COMMIT")
    return problems


def snapshot(store: Store) -> dict[str, list[str]]:
    """Every row of every table, as this connection sees them (uncommitted writes too)."""
    return {
        table: sorted(repr(row) for row in store.db.execute(f"SELECT * FROM [{table}]"))
        for table in store.db.table_names()
    }


class Undo(Exception):
    """Raised inside a caller's ``write()`` to roll it back, with what the call ran and
    what it left for the caller to see."""

    def __init__(self, statements: list[str], seen: dict[str, list[str]]) -> None:
        super().__init__("undo")
        self.statements, self.seen = statements, seen


def call_then_undo(store: Store, call: Callable[[], object]) -> None:
    """Call inside the caller's ``write()``, then fail it."""
    with store.write():
        with recording(store) as statements:
            call()
        raise Undo(statements, snapshot(store))


def public_methods() -> set[str]:
    return {
        name
        for name, _ in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_public_method_is_listed_as_a_write_or_a_read() -> None:
    assert not WRITES.keys() & READS.keys()
    listed = WRITES.keys() | READS.keys() | NEITHER
    assert public_methods() - listed == set(), (
        "a new Store method: list it in WRITES (with a call that writes) or READS"
    )
    assert listed - public_methods() == set(), "listed here, but not a method of Store"


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_write_method_is_one_transaction_of_its_own(
    name: str, store: Store, world: World
) -> None:
    changes = store.db.conn.total_changes
    with recording(store) as statements:
        WRITES[name](store, world)
    assert store.db.conn.total_changes > changes, f"the call of {name} wrote nothing"
    assert broken_rule(statements) == []
    assert not store.db.conn.in_transaction


@pytest.mark.parametrize("name", sorted(WRITES))
def test_inside_a_callers_write_a_method_joins_it_and_its_rollback_undoes_it(
    name: str, store: Store, world: World
) -> None:
    before = snapshot(store)
    with pytest.raises(Undo) as undone:
        call_then_undo(store, lambda: WRITES[name](store, world))
    assert [sql for sql in undone.value.statements if ends_a_transaction(sql)] == []
    assert undone.value.seen != before, f"the call of {name} changed nothing"
    assert snapshot(store) == before
    assert not store.db.conn.in_transaction


@pytest.mark.parametrize("name", sorted(READS))
def test_a_read_method_writes_nothing(name: str, store: Store, world: World) -> None:
    changes = store.db.conn.total_changes
    with recording(store) as statements:
        READS[name](store, world)
    assert [sql for sql in statements if words(sql)[:1] in ([v] for v in WRITE_VERBS)] == []
    assert [sql for sql in statements if ends_a_transaction(sql)] == []
    assert store.db.conn.total_changes == changes


def test_a_failure_the_caller_catches_undoes_only_that_methods_writes(
    store: Store, world: World
) -> None:
    """``record_digest`` of a paper already in one of his digests records nothing (not
    even its digest row), and the caller's transaction goes on: the outbox skips that
    digest and keeps the others."""
    other = store.trending_seqs(1)[0]  # in Ada's digest, never in Bo's
    runs, digests = store.count("job_runs"), store.count("digests")
    with store.write():
        store.start_run("deliver", STAMP, STAMP)
        first = store.record_digest(
            world.bo, message_id(world.bo, 11), world.free_seq, [world.free_seq], 0, b"1", STAMP
        )
        again = store.record_digest(
            world.bo, message_id(world.bo, 12), other, [other, world.free_seq], 0, b"2", STAMP
        )
    assert first is not None
    assert again is None
    assert store.count("digests") == digests + 1
    assert store.delivery(world.bo, other) is None
    assert store.count("job_runs") == runs + 1


def test_only_the_outermost_write_begins_and_commits(seeded_store: Store) -> None:
    with recording(seeded_store) as statements, seeded_store.write():
        with seeded_store.write(), seeded_store.write():
            seeded_store.start_run("deliver", STAMP, STAMP)
        assert seeded_store.db.conn.in_transaction
    assert [sql for sql in statements if ends_a_transaction(sql)] == ["BEGIN IMMEDIATE", "COMMIT"]


def test_a_commit_that_does_not_wait_for_the_disk_leaves_the_next_one_durable(
    store: Store, world: World
) -> None:
    """A claim commits with ``synchronous = NORMAL``; every durable transaction after it
    commits with FULL, even after one that failed; the mode is set only when it changes."""
    sent = (world.sending, world.ada, STAMP)
    with recording(store) as statements:
        assert store.claim(world.queued, 7)
        store.mark_and_claim([sent], [], 7, durable=False)
        with pytest.raises(RuntimeError), store.write(durable=False):
            raise RuntimeError("undone")
        store.mark_deferred(world.deferred, "busy", STAMP)
        mode_then = store.db.execute("PRAGMA synchronous").fetchone()[0]
    assert [s for s in statements if s.upper().startswith(("PRAGMA SYNCHRONOUS =", "COMMIT"))] == [
        "PRAGMA synchronous = NORMAL",
        "COMMIT",
        "COMMIT",
        "PRAGMA synchronous = FULL",
        "COMMIT",
    ]
    assert mode_then == 2  # FULL
