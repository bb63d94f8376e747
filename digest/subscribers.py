"""What a subscriber is: a validated, normalised record, and the CSV form of many.

Addresses are checked with ``email-validator`` (syntax only, no DNS) and
compared case-insensitively; filters are parsed before anything is stored, so
a bad one never lands in the database.  Everything a person types is bounded
here, in the core, whatever the form in front of it says: ``MAX_FILTER_CHARS``,
``MAX_FILTER_TERMS`` and ``MAX_NAME_CHARS`` keep every digest small enough to
render and every preview cheap.  Changes of state live in ``lifecycle``.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from digest import addresses
from digest.errors import DigestError, QueryError, UsageError
from digest.models import FORMATS, FREQUENCIES, Subscriber
from digest.query import leaf_count, parse
from digest.store import Store

CSV_FIELDS = ("email", "filter", "name", "frequency", "format")
MAX_FILTER_CHARS = 500
MAX_FILTER_TERMS = 24
MAX_NAME_CHARS = 100


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
    settled = check_settings(wanted)
    return Wanted(
        normalize_email(wanted.email),
        settled.filter,
        settled.name,
        settled.frequency,
        settled.format,
    )


def check_settings(wanted: Wanted) -> Wanted:
    """Validate the settings, not the address (a stored one is not re-judged on each change)."""
    check_filter(wanted.filter)
    _choice("frequency", wanted.frequency, FREQUENCIES)
    _choice("format", wanted.format, FORMATS)
    check_name(wanted.name)
    return Wanted(
        wanted.email, wanted.filter.strip(), wanted.name.strip(), wanted.frequency, wanted.format
    )


def check_filter(query: str) -> None:
    """A filter a subscriber may store: it parses, and stays within the limits; QueryError."""
    text = query.strip()
    if len(text) > MAX_FILTER_CHARS:
        raise QueryError(
            f"a filter can be at most {MAX_FILTER_CHARS} characters (this one has {len(text)})",
            query=text,
            column=MAX_FILTER_CHARS,
        )
    count = leaf_count(parse(text))
    if count > MAX_FILTER_TERMS:
        raise QueryError(
            f"a filter can have at most {MAX_FILTER_TERMS} terms (this one has {count})",
            query=text,
            column=0,
        )


def check_name(name: str) -> None:
    """A display name: one line of at most ``MAX_NAME_CHARS`` characters; UsageError."""
    if any(c in name for c in "\r\n"):
        raise UsageError("a name cannot contain line breaks")
    if len(name.strip()) > MAX_NAME_CHARS:
        raise UsageError(f"a name can be at most {MAX_NAME_CHARS} characters long")


def _choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"{key} must be one of {', '.join(allowed)} (got {value!r})")


def get(store: Store, email: str) -> Subscriber:
    """The subscriber with this address (as typed, or normalised); UsageError if none."""
    found = store.subscriber(email.strip())
    if found is None:
        with suppress(UsageError):
            found = store.subscriber(normalize_email(email))
    if found is None:
        raise UsageError(f"no subscriber {email}", "see `digest subscribers list`")
    return found


def checked_csv(store: Store, path: Path) -> list[Wanted]:
    """Every row of a CSV checked before any is imported; each bad one is listed."""
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
    return checked


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
