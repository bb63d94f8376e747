"""Subscribers: who wants what, and their state."""

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, NamedTuple

from digest.addresses import lookup_forms
from digest.errors import StoreError
from digest.models import Subscriber
from digest.store.base import Base
from digest.store.sqlite import Database

_COLUMNS = ", ".join(field.name for field in fields(Subscriber))
_OWN = {"id", "email", "secret", "bounces", "suggestions"}  # their own, or small ints (shared)
_REPEATED = frozenset(field.name for field in fields(Subscriber)) - _OWN


def insert_event(
    db: Database,
    subscriber_id: int,
    action: str,
    channel: str,
    from_status: str | None,
    to_status: str,
    detail: str,
    at: str | None,
) -> None:
    """The one INSERT of ``subscription_events`` (the outbox records bounces with it too)."""
    db.execute(
        "INSERT INTO subscription_events "
        "(subscriber_id, at, action, channel, from_status, to_status, detail) "
        "VALUES (?, COALESCE(?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), ?, ?, ?, ?, ?)",
        [subscriber_id, at, action, channel, from_status, to_status, detail],
    )


class Unsubscribed(NamedTuple):
    """When, from which state and through which channel a subscriber was unsubscribed."""

    at: str
    from_status: str | None
    channel: str


class SubscriberStore(Base):
    def subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address (case-insensitive, an IDN domain in either form)."""
        forms = lookup_forms(email)
        where = f"email COLLATE NOCASE IN ({', '.join('?' * len(forms))})"
        rows = list(self.db["subscribers"].rows_where(where, forms, limit=1))
        return Subscriber(**rows[0]) if rows else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """One subscriber by id, with a plain select (it is on every private-feed request)."""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE id = ?", [subscriber_id]
        ).fetchone()
        return Subscriber(*row) if row is not None else None

    def subscriber_by_secret(self, secret: str) -> Subscriber | None:
        rows = list(self.db["subscribers"].rows_where("secret = ?", [secret], limit=1))
        return Subscriber(**rows[0]) if rows else None

    def subscribers(self, statuses: Sequence[str] | None = None) -> list[Subscriber]:
        where, params = None, None
        if statuses is not None:
            where = f"status IN ({','.join('?' * len(statuses))})"
            params = list(statuses)
        rows = self.db["subscribers"].rows_where(where, params, order_by="id")
        shared: dict[Any, Any] = {}  # one object per repeated value: 100,000 share a few
        return [
            Subscriber(
                **{k: shared.setdefault(v, v) if k in _REPEATED else v for k, v in row.items()}
            )
            for row in rows
        ]

    def insert_subscriber(self, fields: dict[str, Any]) -> Subscriber:
        """Insert a subscriber; a duplicate address raises StoreError."""
        try:
            with self.write():
                self.db.table("subscribers").insert(fields)
        except sqlite3.IntegrityError:
            raise StoreError(f"{fields['email']} is already subscribed") from None
        found = self.subscriber(fields["email"])
        assert found is not None
        return found

    def update_subscriber(self, subscriber_id: int, changes: dict[str, Any]) -> None:
        with self.write():
            self.db.table("subscribers").update(subscriber_id, changes)

    def delete_subscriber(self, subscriber_id: int) -> None:
        """Everything about a subscriber: their digests and deliveries go with them."""
        with self.write():
            self.db.execute("DELETE FROM deliveries WHERE subscriber_id = ?", [subscriber_id])
            self.db.execute("DELETE FROM digests WHERE subscriber_id = ?", [subscriber_id])
            self.db.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])

    def add_event(
        self,
        subscriber_id: int,
        action: str,
        channel: str,
        from_status: str | None,
        to_status: str,
        detail: str = "",
        *,
        at: str | None,
    ) -> None:
        """One line of a subscriber's history; ``at`` None stamps the database's clock (for
        the delivery path, which has none).  Wrap it with the change it records in one
        ``write()``, or the change can be stored without its line."""
        with self.write():
            insert_event(
                self.db, subscriber_id, action, channel, from_status, to_status, detail, at
            )

    def events(self, subscriber_id: int) -> list[dict[str, Any]]:
        """A subscriber's history, oldest first."""
        rows = self.db.execute(
            "SELECT at, action, channel, from_status, to_status, detail "
            "FROM subscription_events WHERE subscriber_id = ? ORDER BY id",
            [subscriber_id],
        )
        keys = ("at", "action", "channel", "from_status", "to_status", "detail")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def last_unsubscribe(self, subscriber_id: int) -> Unsubscribed | None:
        """The newest event that left the subscriber unsubscribed (repeats included: a
        person's own unsubscribe after the config's is recorded, and is the newest)."""
        row = self.db.execute(
            "SELECT at, from_status, channel FROM subscription_events "
            "WHERE subscriber_id = ? AND to_status = 'unsubscribed' ORDER BY id DESC LIMIT 1",
            [subscriber_id],
        ).fetchone()
        return Unsubscribed(str(row[0]), row[1], str(row[2])) if row else None

    def app_secret(self, name: str, make: Callable[[], str]) -> tuple[str, bool]:
        """The stored secret ``name``, created with ``make`` on first use; True if just created."""
        with self.write():
            row = self.db.execute("SELECT value FROM app_secrets WHERE name = ?", [name]).fetchone()
            if row is not None:
                return str(row[0]), False
            value = make()
            self.db.execute("INSERT INTO app_secrets (name, value) VALUES (?, ?)", [name, value])
        return value, True
