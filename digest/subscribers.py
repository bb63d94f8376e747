"""Subscribers: validated, normalised, and kept in step with the config and CSV files.

Addresses are checked with ``email-validator`` (syntax only, no DNS) and
compared case-insensitively; filters are parsed before anything is stored,
so a bad one never lands in the database.
"""

import csv
import io
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from digest import addresses
from digest.errors import ConfigError, DigestError, QueryError, UsageError
from digest.models import FORMATS, FREQUENCIES, STATUSES, Source, Subscriber
from digest.query import parse
from digest.store import Store, iso

SECRET_BYTES = 24
CSV_FIELDS = ("email", "filter", "name", "frequency", "format")


@dataclass(frozen=True, slots=True)
class Wanted:
    """What someone asks for, before it is stored: the shape of a CSV row or a config table."""

    email: str
    filter: str
    name: str = ""
    frequency: str = "daily"
    format: str = "html"


def normalize_email(text: str) -> str:
    """The address as stored (see ``digest.addresses``); raises UsageError."""
    return addresses.normalize(text)


def check(wanted: Wanted) -> Wanted:
    """Validate every field; the returned copy holds the normalised address."""
    parse(wanted.filter)
    _choice("frequency", wanted.frequency, FREQUENCIES)
    _choice("format", wanted.format, FORMATS)
    if any(c in wanted.name for c in "\r\n"):
        raise UsageError("a name cannot contain line breaks")
    return Wanted(
        normalize_email(wanted.email),
        wanted.filter.strip(),
        wanted.name.strip(),
        wanted.frequency,
        wanted.format,
    )


def _choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"{key} must be one of {', '.join(allowed)} (got {value!r})")


def add(
    store: Store, wanted: Wanted, now: datetime, *, status: str = "active", source: Source = "cli"
) -> Subscriber:
    """Store a new subscriber; a known address is an error."""
    wanted = check(wanted)
    if store.subscriber(wanted.email) is not None:
        raise UsageError(
            f"{wanted.email} is already subscribed", "use `digest subscribers set` to change it"
        )
    with store.write():
        return store.insert_subscriber(_new_row(wanted, now, status, source))


def _new_row(wanted: Wanted, now: datetime, status: str, source: Source) -> dict[str, Any]:
    stamp = iso(now)
    return {
        "email": wanted.email,
        "name": wanted.name,
        "filter": wanted.filter,
        "frequency": wanted.frequency,
        "format": wanted.format,
        "status": status,
        "source": source,
        "secret": secrets.token_urlsafe(SECRET_BYTES),
        "created_at": stamp,
        "updated_at": stamp,
    }


def get(store: Store, email: str) -> Subscriber:
    found = store.subscriber(email.strip())
    if found is None:
        raise UsageError(f"no subscriber {email}", "see `digest subscribers list`")
    return found


def update(store: Store, email: str, changes: dict[str, str], now: datetime) -> Subscriber:
    """Change some fields of a subscriber, each validated as on add."""
    current = get(store, email)
    if "status" in changes:
        _choice("status", changes["status"], STATUSES)
    merged = Wanted(
        current.email,
        changes.get("filter", current.filter),
        changes.get("name", current.name),
        changes.get("frequency", current.frequency),
        changes.get("format", current.format),
    )
    check(merged)
    with store.write():
        store.update_subscriber(current.id, {**changes, "updated_at": iso(now)})
    return get(store, current.email)


def remove(store: Store, email: str, now: datetime, *, purge: bool = False) -> Subscriber:
    """Unsubscribe (history kept), or with ``purge`` delete everything about them."""
    current = get(store, email)
    with store.write():
        if purge:
            store.delete_subscriber(current.id)
        else:
            store.update_subscriber(current.id, {"status": "unsubscribed", "updated_at": iso(now)})
    return current


def import_csv(store: Store, path: Path, now: datetime) -> list[Subscriber]:
    """Import every row or none: all rows are checked first and each bad one is listed."""
    rows = _read_csv(path)
    problems: list[str] = []
    checked: list[Wanted] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            wanted = check(row)
        except DigestError as err:
            problems.append(f"{path}:{line}: {err.message}")
            continue
        key = wanted.email.lower()
        if key in seen:
            problems.append(f"{path}:{line}: {wanted.email} is also on line {seen[key]}")
        elif store.subscriber(wanted.email) is not None:
            problems.append(f"{path}:{line}: {wanted.email} is already subscribed")
        seen.setdefault(key, line)
        checked.append(wanted)
    if problems:
        raise UsageError("nothing imported; fix these rows:\n" + "\n".join(problems))
    with store.write():
        return [store.insert_subscriber(_new_row(w, now, "active", "import")) for w in checked]


def _read_csv(path: Path) -> list[tuple[int, Wanted]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if header[:2] != ["email", "filter"] or not set(header) <= set(CSV_FIELDS):
        got = ",".join(header)
        raise UsageError(
            f"{path}:1: the header must be email,filter[,name,frequency,format] (got {got})"
        )
    rows = []
    for row in reader:
        if None in row:
            rows.append((reader.line_num, Wanted("", "")))  # extra cells: reported by check()
            continue
        values = {k: (v or "").strip() for k, v in row.items() if k}
        rows.append((reader.line_num, _wanted_from(values)))
    return rows


def _wanted_from(values: dict[str, str]) -> Wanted:
    return Wanted(
        values.get("email", ""),
        values.get("filter", ""),
        values.get("name", ""),
        values.get("frequency") or "daily",
        values.get("format") or "html",
    )


def export_csv(subscribers: Iterable[Subscriber]) -> str:
    """The subscribers as CSV with the same header that import reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in subscribers:
        writer.writerow([s.email, s.filter, s.name, s.frequency, s.format])
    return out.getvalue()


def sync_config(store: Store, declared: Sequence[Wanted], source: str, now: datetime) -> None:
    """Make the database agree with the config's ``[[subscribers]]``: add, update, retire."""
    checked = [_check_declared(w, i, source) for i, w in enumerate(declared, start=1)]
    wanted_by_email = {w.email.lower(): w for w in checked}
    with store.write():
        for current in store.subscribers():
            retired = current.source == "config" and current.email.lower() not in wanted_by_email
            if retired and current.status != "unsubscribed":
                store.update_subscriber(
                    current.id, {"status": "unsubscribed", "updated_at": iso(now)}
                )
        for wanted in checked:
            _apply_declared(store, wanted, now)


def _check_declared(wanted: Wanted, index: int, source: str) -> Wanted:
    try:
        return check(wanted)
    except QueryError as err:
        raise ConfigError(f"{source}: [[subscribers]] #{index} filter: {err}") from None
    except DigestError as err:
        raise ConfigError(f"{source}: [[subscribers]] #{index}: {err.message}") from None


def _apply_declared(store: Store, wanted: Wanted, now: datetime) -> None:
    current = store.subscriber(wanted.email)
    if current is None:
        store.insert_subscriber(_new_row(wanted, now, "active", "config"))
        return
    fields = {
        "name": wanted.name,
        "filter": wanted.filter,
        "frequency": wanted.frequency,
        "format": wanted.format,
        "source": "config",
    }
    if current.status == "unsubscribed" and current.source == "config":
        fields["status"] = "active"
    if any(getattr(current, k) != v for k, v in fields.items()):
        store.update_subscriber(current.id, {**fields, "updated_at": iso(now)})
