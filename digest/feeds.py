"""Feeds: Atom and RSS 2.0 of every paper, of each configured topic, and of each subscriber.

No daily-papers site offers a *filtered* feed, so we publish three kinds, each in both
formats and capped at ``[feeds] max_entries``:

* ``all``: every paper, trending first (seen in more listings, then at a better
  position, then newest);
* one per ``[[topics]]`` table: the papers its filter selects, in the same order;
* one per subscriber, addressed by their ``feed`` link token (see ``links``): their
  newest matches over the whole store (a digest's further matches are on its ``/matches``
  page, since a feed this short cannot hold them all), each entry ending with the
  reader's signed "More like this" and "Not for me" links, as in their digest.

What feed readers need (``FIELD_NOTES.md``): an entry id that never changes for a paper
(a tag URI of the paper id, with a fixed date, never derived from now), UTC dates (the
first sighting), a ``rel="self"`` link, and cheap conditional GETs.  A 50-entry feed
costs milliseconds to build with feedgen and readers poll often, so ``Feeds`` caches the
bytes with a strong ETag.  The cache is keyed by a *version* of the store read with one
tiny query per request, so an ingest by another process (the scheduler) is seen without
anyone calling ``invalidate()``.  ``build_all`` writes the same bytes into
``[feeds] dir`` atomically, for any static web server.

An entry links to the paper's arXiv abstract when a source gave its id (else to
``[digest] paper_url``), with its PDF, Daily Papers and code pages as related links,
and carries the authors and categories sources gave (``paper_links``).  Atom names each
author in ``<author><name>``; RSS 2.0's ``<author>`` must be an email address, which
sources never give, so RSS names them in ``dc:creator`` (Dublin Core, the element feed
readers show), declared only in feeds that name someone: a feed of text-dump papers
stays byte for byte what it was.

Text from dumps, sources and subscribers is never markup: titles, names and categories
are XML text (escaped by lxml), content is HTML built here from escaped text, and
characters XML 1.0 forbids are dropped.
"""

import hashlib
import html
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from digest import links
from digest.config import Config
from digest.errors import ConfigError
from digest.files import write_atomic
from digest.match import compile_filter, shared_stemmer, trend_key
from digest.models import PaperRow, Subscriber
from digest.paper_links import LISTED_AUTHORS, PaperLinks, author_names, links_of, plain_name
from digest.query import Corpus, Focus, to_fts5
from digest.store import Store
from digest.windows import documents

Format = Literal["atom", "rss"]
FORMATS: tuple[Format, ...] = ("atom", "rss")
MEDIA_TYPES: dict[Format, str] = {"atom": "application/atom+xml", "rss": "application/rss+xml"}
TAG_YEAR = 2026  # the date in every tag URI: fixed forever, or every id would change
CACHE_SIZE = 512  # bodies kept (public, topics and the most recently read private feeds)
STATIC_STATUSES = ("active", "paused")  # whose private feeds ``build_all`` writes
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SLUG_FILE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*\.(atom|rss)")
_TOKEN_FILE = re.compile(r"\d{1,12}-[0-9a-f]{32}\.(atom|rss)")
_Papers = Callable[[], list[PaperRow]]
_Order = Callable[[list[PaperRow]], list[PaperRow]]


@dataclass(frozen=True, slots=True)
class FeedBody:
    """One built feed, ready to serve with conditional GET."""

    data: bytes
    etag: str  # strong, quoted: '"<hex>"' (a hash of data)
    last_modified: datetime  # aware UTC, whole seconds: the newest entry, or the build time
    media_type: str  # with "; charset=utf-8"
    entries: int


@dataclass(frozen=True, slots=True)
class _Feed:
    """What a feed is: ``path`` is its URL path under ``/feeds/`` without the suffix."""

    path: str
    tag: str  # the part of the feed id after ``feed/``
    title: str
    description: str


class Feeds:
    """Builds feeds on demand and caches the bytes until the store changes."""

    def __init__(
        self, store: Store, config: Config, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.store = store
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._base = config.web.base_url.rstrip("/")
        self._host = urlsplit(self._base).hostname or "localhost"
        self._topics = {topic.feed_slug: topic for topic in config.topics}
        _check_topics(config)
        self._cache: OrderedDict[tuple[str, ...], FeedBody] = OrderedDict()
        self._version: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    def public(self, fmt: Format) -> FeedBody:
        """Every paper, trending first."""
        feed = _Feed("all", "all", "Trending papers", "Trending research papers, most listed first")
        return self._cached(("all", fmt), feed, self._trending, fmt)

    def topic(self, slug: str, fmt: Format) -> FeedBody | None:
        """The papers a ``[[topics]]`` filter selects, trending first; None for an unknown slug."""
        topic = self._topics.get(slug)
        if topic is None:
            return None
        title, about = f"Trending papers: {topic.name}", "Trending research papers matching"
        feed = _Feed(f"topics/{slug}", f"topic/{slug}", title, f"{about} {topic.filter}")
        papers = partial(self._matching, topic.filter, _by_trend)
        return self._cached(("topic", slug, fmt), feed, papers, fmt)

    def private(self, token: str, fmt: Format) -> FeedBody | None:
        """A subscriber's matches, newest first; None unless ``token`` is the feed token of
        someone still subscribed (an unsubscribed reader's feed ends with the subscription)."""
        subscriber = links.resolve(token, "feed", self.store.subscriber_by_id)
        if subscriber is None or subscriber.status == "unsubscribed":
            return None
        return self._private(subscriber, token, fmt)

    def invalidate(self) -> None:
        """Drop every cached body (after an ingest or a subscriber change in this process)."""
        with self._lock:
            self._cache.clear()
            self._version = None

    # building ----------------------------------------------------------------------------

    def _private(self, subscriber: Subscriber, token: str, fmt: Format) -> FeedBody:
        query = subscriber.filter
        tag = f"subscriber/{subscriber.id}"  # not the token: stays when the secret changes
        feed = _Feed(token, tag, f"Your papers: {query}", f"Research papers matching {query}")
        papers = partial(self._matching, query, list)  # the store lists papers newest first
        return self._cached(("private", token, query, fmt), feed, papers, fmt, subscriber)

    def _cached(
        self,
        key: tuple[str, ...],
        feed: _Feed,
        papers: _Papers,
        fmt: Format,
        reader: Subscriber | None = None,
    ) -> FeedBody:
        """The cached body for ``key`` if the store has not changed since, else a new one.

        The version is read before building: a write landing during the build only
        makes the next request rebuild, it can never leave stale bytes in the cache.
        """
        version = self.store.version()
        with self._lock:
            if version != self._version:
                self._cache.clear()
                self._version = version
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        body = self._build(feed, papers(), fmt, reader)
        with self._lock:
            if self._version == version:
                self._cache[key] = body
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return body

    def _trending(self) -> list[PaperRow]:
        seqs = self.store.trending_seqs(self.config.feeds.max_entries)
        rank = {seq: i for i, seq in enumerate(seqs)}
        return sorted(self.store.papers(seqs=seqs), key=lambda p: rank[p.seq]) if seqs else []

    def _matching(self, query: str, order: _Order) -> list[PaperRow]:
        """The first ``max_entries`` papers ``query`` selects, in ``order``.

        As ``backtest.backtest`` does, the FTS5 prefilter narrows the candidates and
        ``Corpus`` decides; but a feed needs only the first few and no relevance, so
        the candidates are put in order first and evaluated a growing chunk at a time
        (a filter selects each document on its own), stopping once the feed is full.
        """
        node = compile_filter(query)
        candidates = order(self.store.papers(fts=to_fts5(node)))
        wanted = self.config.feeds.max_entries
        found: list[PaperRow] = []
        start, size = 0, wanted + 10
        stemmer = shared_stemmer()
        focus = Focus.of(node, stemmer)  # index only what this one filter asks about
        while start < len(candidates) and len(found) < wanted:
            chunk = candidates[start : start + size]
            hits = Corpus(stemmer, documents(chunk), focus).evaluate(node)
            found.extend(paper for i, paper in enumerate(chunk) if hits >> i & 1)
            start, size = start + size, size * 2
        return found[:wanted]

    def _build(
        self, feed: _Feed, papers: Sequence[PaperRow], fmt: Format, reader: Subscriber | None
    ) -> FeedBody:
        """The feed's bytes; a ``reader``'s feed carries their verdict links in each entry."""
        papers = papers[: self.config.feeds.max_entries]
        dates = [_utc(p.first_seen) for p in papers]
        modified = max(dates, default=None) or self._clock().astimezone(UTC).replace(microsecond=0)
        gen = FeedGenerator()
        gen.id(self._tag(f"feed/{feed.tag}"))
        gen.title(_text(feed.title))
        gen.description(_text(feed.description))
        gen.author(name="digest")
        gen.link(href=f"{self._base}/feeds/{feed.path}.{fmt}", rel="self", type=MEDIA_TYPES[fmt])
        gen.link(href=f"{self._base}/", rel="alternate")  # last: RSS takes the last link
        gen.language("en")
        gen.generator("digest")
        gen.updated(modified)
        if any(paper.meta.authors for paper in papers):
            gen.load_extension("dc", atom=False, rss=True)  # before add_entry: entries inherit it
        for paper, seen in zip(papers, dates, strict=True):
            entry = gen.add_entry(order="append")
            entry.id(self._tag(f"paper/{paper.id}"))
            entry.title(_text(paper.title))
            links = links_of(paper, self.config.digest.paper_url)
            entry.link(href=links.abstract_url, rel="alternate")
            related = _related(links)
            entry.register_extension("related", partial(_RelatedLinks, related), rss=False)
            _credit(entry, paper)
            entry.published(seen)
            entry.updated(seen)
            verdicts = self._verdicts(reader, paper.id) if reader is not None else []
            entry.content(_content(paper.abstract, related, verdicts), type="html")
        data = gen.atom_str(pretty=True) if fmt == "atom" else gen.rss_str(pretty=True)
        return FeedBody(
            data=data,
            etag=f'"{hashlib.sha256(data).hexdigest()[:32]}"',
            last_modified=modified,
            media_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8",
            entries=len(papers),
        )

    def _verdicts(self, reader: Subscriber, paper_id: str) -> list[tuple[str, str]]:
        return [
            (self._base + links.feedback_path(reader, paper_id, verdict), label)
            for verdict, label in links.VERDICT_LABELS.items()
        ]

    def _tag(self, specific: str) -> str:
        return f"tag:{self._host},{TAG_YEAR}:{specific}"


class _RelatedLinks:
    """An Atom ``<link rel="related">`` per PDF, Daily Papers or code link: a feedgen entry
    extension.

    feedgen 1.0's ``FeedEntry.link`` drops each link's ``rel`` and ``title`` in Atom (a
    shadowed variable), which would turn code links into extra ``alternate`` links.
    """

    def __init__(self, code: Sequence[tuple[str, str]]) -> None:
        self.code = code

    def extend_atom(self, entry: Any) -> Any:  # the only hook feedgen calls (rss=False)
        for url, label in self.code:
            xml_elem("link", entry, href=url, rel="related", title=label)
        return entry


def build_all(
    store: Store, config: Config, *, now: datetime | None = None
) -> list[tuple[Path, int]]:
    """Write every public feed (and the private ones when ``[feeds] private_static``).

    Each file is written to a temporary name in its folder, then renamed over the old
    one, so a web server never serves half a file.  Files in ``topics/`` and ``private/``
    named like ours but no longer wanted (a removed topic, a subscriber who left or
    whose secret changed, ``private_static`` turned off) are removed: a revoked private
    feed must not stay online.  Nothing else in the folder is touched.
    """
    feeds = Feeds(store, config, clock=(lambda: now) if now is not None else None)
    root = config.feeds.dir
    jobs: list[tuple[Path, Callable[[Format], FeedBody | None], bool]] = [
        (root / "all", feeds.public, False)
    ]
    for topic in config.topics:
        slug = topic.feed_slug
        jobs.append((root / "topics" / slug, partial(feeds.topic, slug), False))
    if config.feeds.private_static:
        for person in store.subscribers(STATIC_STATUSES):
            token = links.token(person, "feed")
            jobs.append((root / "private" / token, partial(feeds._private, person, token), True))
    written: list[tuple[Path, int]] = []
    for stem, make, private in jobs:
        for fmt in FORMATS:
            body = make(fmt)
            assert body is not None
            path = stem.parent / f"{stem.name}.{fmt}"
            write_atomic(path, body.data, private=private)
            written.append((path, body.entries))
    kept = {path for path, _ in written}
    _prune(root / "topics", _SLUG_FILE, kept)
    _prune(root / "private", _TOKEN_FILE, kept)
    return written


# helpers ---------------------------------------------------------------------------------


def _check_topics(config: Config) -> None:
    """Every slug is unique, or a ConfigError says which (each filter parsed at config load)."""
    seen: dict[str, str] = {}
    for topic in config.topics:
        slug = topic.feed_slug
        if slug in seen:
            raise ConfigError(
                f"[[topics]] {topic.name!r} and {seen[slug]!r} share the feed slug {slug!r}",
                "give one of them its own `slug`",
            )
        seen[slug] = topic.name


def _xml_safe(value: str) -> str:
    """``value`` without the characters XML 1.0 forbids (lxml refuses them)."""
    return value if value.isprintable() else _XML_FORBIDDEN.sub(" ", value)


def _text(value: str) -> str:
    """One line of XML-safe text (titles, names, categories)."""
    return " ".join(_xml_safe(value).split())


def _related(links: PaperLinks) -> list[tuple[str, str]]:
    """(url, label) of the pages beside the abstract: PDF, Daily Papers, then code."""
    found = [(links.pdf_url, "PDF"), (links.daily_papers_url, "Daily Papers")]
    return [(url, label) for url, label in found if url] + list(links.code)


def _credit(entry: Any, paper: PaperRow) -> None:
    """The entry's authors (the first ``LISTED_AUTHORS``) and categories, as plain text.

    Atom's ``<author>`` holds a name; feedgen writes RSS's ``<author>`` only with an
    email, so there the names go to ``dc:creator`` (loaded by ``_build`` when needed).
    """
    listed = author_names(paper.meta.authors, LISTED_AUTHORS)
    names = [name for name in map(_text, listed) if name]
    if names:
        entry.author([{"name": name} for name in names])
        entry.dc.dc_creator(names)
    terms = [term for term in map(_text, map(plain_name, paper.meta.categories)) if term]
    if terms:
        entry.category([{"term": term} for term in terms])


def _content(abstract: str, *rows: Sequence[tuple[str, str]]) -> str:
    """The abstract as escaped HTML, then a line of links per row that has any (the
    related pages: PDF, code, ...; the reader's verdicts)."""
    parts = [f"<p>{html.escape(_xml_safe(abstract), quote=False)}</p>"]
    for row in rows:
        anchors = [f'<a href="{html.escape(u)}">{html.escape(label)}</a>' for u, label in row]
        if anchors:
            parts.append(f"<p>{' · '.join(anchors)}</p>")
    return "\n".join(parts)


def _by_trend(papers: list[PaperRow]) -> list[PaperRow]:
    """Trending first (``match.trend_key``), then newest (as the store's ``trending_seqs``)."""
    papers = sorted(papers, key=lambda p: p.seq)
    papers.sort(key=lambda p: p.first_seen, reverse=True)
    papers.sort(key=trend_key)
    return papers


def _utc(stamp: str) -> datetime:
    """A stored ``2026-11-24T07:00:00Z`` as an aware UTC datetime."""
    return datetime.fromisoformat(stamp).astimezone(UTC).replace(microsecond=0)


def _prune(folder: Path, ours: re.Pattern[str], kept: set[Path]) -> None:
    if folder.is_dir():
        for path in folder.iterdir():
            if ours.fullmatch(path.name) and path not in kept and path.is_file():
                path.unlink(missing_ok=True)
