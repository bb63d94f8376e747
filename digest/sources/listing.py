"""A parsed listing: the entries kept, the items skipped and why; the checks every source shares.

A source's response is judged item by item, not all or nothing as a dump file
is: one odd item in a day's listing must not cost the other forty.  An item
that fails the dump rules (``digest.dumps.entry_problem``) is skipped with one
short reason; a response whose every item fails is an error, since then the
source, not the item, is broken.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from digest.dumps import entry_problem
from digest.errors import SourceFailed
from digest.models import Entry, PaperMeta

# New-style ids (``2401.12345``, since 2007; four digits after the dot before 2015)
# and old-style ones (``hep-th/9901001``, ``math.AG/0101001``), each with an optional version.
_ARXIV_ID = re.compile(
    r"(?P<id>\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>[1-9]\d*))?",
    re.ASCII,
)
# Control characters, and the lone surrogates JSON can escape but no UTF-8 can encode.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
URL_MAX = 2_000
COUNT_MAX = 10**9
NAME_MAX = 300
AUTHORS_MAX = 5_000


@dataclass(slots=True)
class Parsed:
    """What one response held.

    ``entries``: in listing order, ``position`` their rank among the kept ones,
    ``line`` the item's 1-based index in the response.  ``skipped``: one
    reason per item left out (``item 7: abstract of 90 characters, under
    150``).  ``replaced``: arXiv announcements of new versions of old papers,
    left out on purpose and only counted.  ``listing_date``: the date the
    listing gives itself, as it gives it (a dump's ``Jul 30``, an arXiv RSS
    feed's announcement day as YYYY-MM-DD), or None.
    """

    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    replaced: int = 0
    listing_date: str | None = None


@dataclass(slots=True)
class ListingBuilder:
    """Collects a response's items in order: checks each, drops repeats, then judges the whole."""

    parsed: Parsed = field(default_factory=Parsed)
    _first_item: dict[str, int] = field(default_factory=dict)
    _titled: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    def add(self, item: int, title: str, abstract: str, meta: PaperMeta) -> None:
        """Keep the item as the next entry, or skip it with the reason; a repeat keeps the first.

        A repeat is the same arXiv id, or the same title where the arXiv ids do not
        tell two papers apart (one is missing, or both are the same): two papers
        with one title and two arXiv ids are two papers, and both are kept.
        """
        problem = entry_problem(title, abstract)
        if problem:
            self.skip(item, problem)
            return
        entry = Entry.of(len(self.parsed.entries) + 1, title, abstract, item, meta)
        first = self._repeat_of(entry.paper_id, meta.arxiv_id, item)
        if first is not None:
            self.skip(item, f"the same paper as item {first}")
            return
        self.parsed.entries.append(entry)

    def _repeat_of(self, paper_id: str, arxiv: str | None, item: int) -> int | None:
        if arxiv is not None:
            first = self._first_item.setdefault(arxiv, item)
            if first != item:
                return first
        titled = self._titled.setdefault(paper_id, (item, arxiv))
        if titled[0] == item or (None not in (arxiv, titled[1]) and arxiv != titled[1]):
            return None
        return titled[0]

    def skip(self, item: int, reason: str) -> None:
        self.parsed.skipped.append(f"item {item}: {reason}")

    def finish(self) -> Parsed:
        """The listing; SourceFailed when items came and every one was skipped.

        An empty listing is valid (arXiv on a weekend, a quiet day); so is one
        where only replacements came.
        """
        parsed = self.parsed
        if parsed.skipped and not parsed.entries:
            more = len(parsed.skipped) - 1
            rest = f" (and {more} more)" if more else ""
            raise SourceFailed(
                f"no usable item: {parsed.skipped[0]}{rest}",
                hint="the listing's format may have changed",
            )
        return parsed


def clean_text(value: object) -> str | None:
    """A text field with its whitespace runs collapsed (HF summaries keep the arXiv line breaks)."""
    if not isinstance(value, str):
        return None
    return " ".join(value.split())


def arxiv_id(text: object) -> str | None:
    """The arXiv id in a bare id, ``arXiv:…``, ``oai:arXiv.org:…`` or an abs URL, unversioned.

    The version is dropped: the paper is the same paper in its next version,
    and two sources give the same id only without it.
    """
    if not isinstance(text, str) or len(text) > URL_MAX:
        return None
    candidate = text.strip()
    for prefix in ("oai:arXiv.org:", "arXiv:", "arxiv:"):
        candidate = candidate.removeprefix(prefix)
    parts = urlsplit(candidate) if "://" in candidate else None
    if parts is not None:
        host = (parts.hostname or "").removeprefix("www.").removeprefix("export.")
        if host != "arxiv.org" or not parts.path.startswith("/abs/"):
            return None
        candidate = parts.path.removeprefix("/abs/")
    match = _ARXIV_ID.fullmatch(candidate)
    return match.group("id") if match else None


def web_url(value: object) -> str | None:
    """An absolute http(s) URL with a host, or None (a bare ``owner/repo`` is not one)."""
    if not isinstance(value, str) or len(value) > URL_MAX or not value.isascii():
        return None
    if any(c.isspace() for c in value) or _UNSAFE.search(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.hostname else None


def count(value: object) -> int | None:
    """A count (upvotes, comments): an int from 0 to a billion, else None; a bool is not one."""
    if type(value) is not int or not 0 <= value <= COUNT_MAX:
        return None
    return value


def iso_date(value: object) -> str | None:
    """The UTC date (YYYY-MM-DD) of an ISO 8601 timestamp such as ``2024-01-15T09:30:00.000Z``."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a timestamp; a year 9999 pushed past the calendar
        return None
    return moment.date().isoformat()


def person(value: object) -> str | None:
    """An author's name: text of at most NAME_MAX characters with no control character.

    Most names are printable with single spaces, which already is what the careful
    path would return (a control character or surrogate is never printable): they
    skip it, which on a listing of 2,000 papers saves most of the authors' cost.
    """
    if (
        type(value) is str
        and value.isprintable()
        and len(value) <= NAME_MAX
        and "  " not in value
        and value[:1] != " "
        and value[-1:] != " "
    ):
        return value or None
    return careful_person(value)


def careful_person(value: object) -> str | None:
    """``person`` the long way: whitespace collapsed, then length and characters checked."""
    name = clean_text(value)
    if not name or len(name) > NAME_MAX or _UNSAFE.search(name):
        return None
    return name
