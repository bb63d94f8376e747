"""Plain records passed between the stages: entries, papers, sightings, subscribers, ingest results.

Data only: what derives a value from text (a paper's id, its links) lives in
``titles`` and ``paper_links``; these records hold the result."""

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from digest.paper_links import find_links
from digest.titles import paper_id


@dataclass(frozen=True, slots=True)
class PaperMeta:
    """What a source knows of a paper beyond its title and abstract (text dumps know none).

    Every field is optional: a source gives what it has.  ``published`` is an
    ISO date (YYYY-MM-DD); ``upvotes``, ``comments`` and ``listed`` (the day the
    listing put the paper up, when it says so per paper) are as of this sighting.
    """

    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    published: str | None = None
    upvotes: int | None = None
    comments: int | None = None
    github: str | None = None
    listed: str | None = None


NO_META = PaperMeta()


class Entry(NamedTuple):
    """A title/abstract pair; ``position`` is its 1-based rank, ``line`` its title line.

    The paper id and the links are derived once, where the entry is parsed.  A
    named tuple rather than a frozen dataclass: as immutable, and three times
    cheaper to build, which shows on an ingest of 100,000 entries.
    """

    position: int
    title: str
    abstract: str
    line: int
    paper_id: str
    links: tuple[str, ...]
    meta: PaperMeta | None = None

    @classmethod
    def of(
        cls, position: int, title: str, abstract: str, line: int, meta: PaperMeta | None = None
    ) -> "Entry":
        """``line``: the title's line in a dump, or the item's index in a source's response."""
        links = tuple(find_links(abstract))
        return cls(position, title, abstract, line, paper_id(title), links, meta)


FileStatus = Literal["ingested", "duplicate", "rejected"]


@dataclass(slots=True)
class FileResult:
    """What ingesting one file did; the shape of ``digest ingest --json``."""

    path: str
    status: FileStatus
    entries: int = 0
    new: int = 0
    seen: int = 0
    error: str | None = None
    dump_id: int | None = None
    moved_to: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "status": self.status,
            "entries": self.entries,
            "new": self.new,
            "seen": self.seen,
            "error": self.error,
        }


@dataclass(slots=True)
class IngestReport:
    """The files handled; ``waiting``: files left in the inbox, still being written;
    ``error``: why the ingest stopped early (a full disk), the files after it untouched."""

    files: list[FileResult] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def rejected(self) -> int:
        return sum(1 for f in self.files if f.status == "rejected")

    @property
    def new_papers(self) -> int:
        return sum(f.new for f in self.files)


Frequency = Literal["daily", "weekly"]
Format = Literal["html", "text"]
Status = Literal["pending", "active", "paused", "unsubscribed", "bouncing"]
Source = Literal["cli", "config", "import", "web"]
SettingsOwner = Literal["operator", "config", "subscriber"]
FREQUENCIES: tuple[Frequency, ...] = ("daily", "weekly")
FORMATS: tuple[Format, ...] = ("html", "text")
STATUSES: tuple[Status, ...] = ("pending", "active", "paused", "unsubscribed", "bouncing")


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscriber; ``secret`` (never printed) keys their links and private feed."""

    id: int
    email: str
    name: str
    filter: str
    frequency: Frequency
    format: Format
    status: Status
    source: Source
    secret: str
    bounces: int
    created_at: str
    updated_at: str
    settings_owner: SettingsOwner = "operator"
    suggestions: bool = True  # "you may also like" beside the filter's matches

    def __post_init__(self) -> None:
        object.__setattr__(self, "suggestions", bool(self.suggestions))  # SQLite gives 0/1

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "name": self.name,
            "filter": self.filter,
            "frequency": self.frequency,
            "format": self.format,
            "status": self.status,
            "source": self.source,
            "settings_owner": self.settings_owner,
            "created_at": self.created_at,
        }


Verdict = Literal["more", "less"]
VERDICTS: tuple[Verdict, ...] = ("more", "less")  # "more like this", "not for me"


@dataclass(frozen=True, slots=True)
class Feedback:
    """One reader's verdict on one paper, as of ``created_at`` (ISO UTC)."""

    subscriber_id: int
    paper_seq: int
    verdict: Verdict
    created_at: str


@dataclass(frozen=True, slots=True)
class PaperRow:
    """A stored paper with its trend signal; ``meta`` holds what sources told of it
    (``upvotes`` and ``comments``: the most any sighting had)."""

    seq: int
    id: str
    title: str
    abstract: str
    links: list[str]
    first_seen: str
    times_seen: int
    best_position: int
    last_seen: str
    meta: PaperMeta = NO_META

    def as_json(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "id": self.id,
            "title": self.title,
            "abstract": self.abstract,
            "links": self.links,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "times_seen": self.times_seen,
            "best_position": self.best_position,
            "arxiv_id": meta.arxiv_id,
            "authors": list(meta.authors),
            "categories": list(meta.categories),
            "published": meta.published,
            "upvotes": meta.upvotes,
            "comments": meta.comments,
            "github": meta.github,
        }


@dataclass(frozen=True, slots=True)
class Sighting:
    """One listing a paper appeared in: its date, the position, when it was ingested.

    No file name: sightings are shown to readers, and dump files are the operator's business.
    """

    listing_date: str | None
    position: int
    ingested_at: str


# What a filter narrows the store to (``query.to_narrowing``; the store says it in SQL). ----


@dataclass(frozen=True, slots=True)
class FtsMatch:
    """Rows the FTS5 index matches with this safe expression."""

    expression: str


@dataclass(frozen=True, slots=True)
class Spelled:
    """Rows whose text fields, lowercased, contain ``prefix``, or hold any character
    outside printable ASCII (where SQL's ``lower`` is not the tokenizer's folding)."""

    prefix: str
    fields: tuple[Literal["title", "abstract"], ...]


@dataclass(frozen=True, slots=True)
class HasValues:
    """Rows with at least one author (or category): the only ones an ``author:`` leaf matches."""

    field: Literal["author", "category"]


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple["Narrowing", ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple["Narrowing", ...]


Narrowing = FtsMatch | Spelled | HasValues | AllOf | AnyOf
