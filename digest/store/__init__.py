"""The store: the only code that talks to the SQLite database (through sqlite-utils).

A real file in WAL mode, its schema built by the append-only migrations in
``migrations.py``.  Writes happen in ``BEGIN IMMEDIATE`` transactions so that
two processes never interleave half-done work.  The methods are grouped by
entity, one module each (papers, subscribers, outbox), and combined here.

The one rule of transactions: every public method that writes is all-or-nothing
on its own, one ``store.write()`` of its own.  ``write()`` nests: inside a
caller's ``with store.write():`` a method joins that transaction instead of
committing, so the core makes several writes one unit by wrapping them, and
wraps nothing else.  ``tests/test_store_transactions.py`` holds every method to it.
"""

from pathlib import Path

from digest.store.base import Base, Identity, iso
from digest.store.feedback import FeedbackStore
from digest.store.model import ModelStore, SavedCorpus, SavedReader
from digest.store.outbox import OutboxStore, Packed, QueuedDigest, pack, unpack
from digest.store.papers import DumpCounts, PaperStore
from digest.store.queue import OutboxRow, QueueStore, Waiting
from digest.store.retention import Pruned, RetentionStore
from digest.store.runs import RunStore
from digest.store.sources import SourceState, SourceStore
from digest.store.subscribers import SubscriberStore


class Store(
    PaperStore,
    SubscriberStore,
    OutboxStore,
    RunStore,
    QueueStore,
    RetentionStore,
    SourceStore,
    FeedbackStore,
    ModelStore,
):
    """Open the database at ``path``: creating and migrating it, or (``create=False``)
    only an existing, up-to-date one (see ``Base``)."""

    def __init__(self, path: Path, *, create: bool = True, named_by: str = "") -> None:
        Base.__init__(self, path, create=create, named_by=named_by)


__all__ = [
    "DumpCounts",
    "Identity",
    "OutboxRow",
    "Packed",
    "Pruned",
    "QueuedDigest",
    "SavedCorpus",
    "SavedReader",
    "SourceState",
    "Store",
    "Waiting",
    "iso",
    "pack",
    "unpack",
]
