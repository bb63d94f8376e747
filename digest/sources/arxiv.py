"""arXiv listing feeds (RSS 2.0 or Atom, one per category) parsed into entries, with feedparser.

Pure: bytes in, a ``Parsed`` listing or ``SourceFailed`` out.  The shape is
arXiv's own specification (arxiv-docs ``help/rss_specifications.md`` and
``help/atom_specifications.md``, the feeds of rss.arxiv.org since 2024): each
item or entry carries

- ``<arxiv:announce_type>``: ``new``, ``cross`` (new to this category, not its
  primary), ``replace`` or ``replace-cross`` (a new version of an older paper);
- a description (RSS) or summary (Atom) of the form ``arXiv:2203.01250v3
  Announce Type: replace-cross \\nAbstract: …``;
- the id ``oai:arXiv.org:2203.01250v3`` (RSS ``<guid>``, Atom ``<id>``), the
  abstract page as the link, ``<category>`` elements (``term`` in Atom),
  ``<pubDate>``/``<published>`` (the announcement day) and one
  ``<dc:creator>`` with the authors separated by commas.

New and cross announcements become entries; replacements are counted in
``replaced`` and left out, since their papers were announced before.  The
older export.arxiv.org query API (Atom, ids like
``http://arxiv.org/abs/2401.12345v1``, one ``<author>`` per author, plain
abstracts, no announce type) reads the same way: an entry without an
announce type is a paper, kept.
"""

import calendar
import io
import re
import time
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.errors import SourceFailed
from digest.models import PaperMeta
from digest.sources.listing import AUTHORS_MAX, ListingBuilder, Parsed, arxiv_id, clean_text, person

KEPT = frozenset({"new", "cross"})
REPLACED = frozenset({"replace", "replace-cross"})
# "arXiv:2203.01250v3 Announce Type: replace-cross \nAbstract: …" before the abstract itself.
_PREAMBLE = re.compile(
    r"\s*arXiv:(?P<id>\S+)\s+Announce\s+Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?", re.ASCII
)


def parse_arxiv(body: bytes, source: str) -> Parsed:
    """Each new or cross announcement of the feed, in its order, as an entry.

    ``source`` names the listing; the reasons do not repeat it.
    """
    feed = _feed(body)
    listing = ListingBuilder()
    listing.parsed.listing_date = _date(feed.feed.get("published_parsed"))
    for number, item in enumerate(feed.entries, start=1):
        summary = item.get("summary")
        preamble = _PREAMBLE.match(summary) if isinstance(summary, str) else None
        announced = item.get("arxiv_announce_type") or (preamble and preamble.group("type"))
        announced = clean_text(announced)
        if announced in REPLACED:
            listing.parsed.replaced += 1
            continue
        if announced and announced not in KEPT:
            listing.skip(number, f"announce type {announced!r}, neither new nor cross")
            continue
        abstract = clean_text(summary[preamble.end() :] if preamble else summary)
        title = clean_text(item.get("title"))
        if not title:
            listing.skip(number, "title missing")
        elif not abstract:
            listing.skip(number, "abstract missing")
        else:
            listing.add(number, title, abstract, _meta(item, preamble and preamble.group("id")))
    return listing.finish()


def _feed(body: bytes) -> Any:
    """The feed as feedparser reads it, or SourceFailed when it is not one.

    The body goes in as a stream: feedparser fetches a string that looks like a
    URL.  Its HTML sanitising is off: a title is text, kept verbatim, and
    escaping it is the renderer's job.
    """
    feed = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    if not feed.get("version") and not feed.entries:
        problem = feed.get("bozo_exception")
        why = f": {problem}" if problem else ""
        raise SourceFailed(
            f"not an RSS or Atom feed{why}", hint="is the URL an arXiv listing feed?"
        )
    return feed


def _meta(item: Any, preamble_id: str | None) -> PaperMeta:
    found = (arxiv_id(item.get("id")), arxiv_id(item.get("link")), arxiv_id(preamble_id))
    return PaperMeta(
        arxiv_id=next((one for one in found if one), None),
        authors=_authors(item.get("authors")),
        categories=_categories(item.get("tags")),
        published=_date(item.get("published_parsed")),
    )


def _authors(value: object) -> tuple[str, ...]:
    """One ``dc:creator`` holds them all, comma-separated; the query API has one author each."""
    if not isinstance(value, list):
        return ()
    raw = [author.get("name") for author in value if isinstance(author, dict)]
    if len(raw) == 1 and isinstance(raw[0], str):
        raw = list(raw[0].split(","))
    names = (person(name) for name in raw[:AUTHORS_MAX])
    return tuple(name for name in names if name)


def _categories(value: object) -> tuple[str, ...]:
    """The ``term`` of each category, in order, once each."""
    if not isinstance(value, list):
        return ()
    terms = (clean_text(tag.get("term")) for tag in value if isinstance(tag, dict))
    return tuple(dict.fromkeys(term for term in terms if term and len(term) <= 64))


def _date(value: object) -> str | None:
    """feedparser's parsed date (a UTC ``struct_time``) as YYYY-MM-DD."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC).date().isoformat()
    except (OverflowError, ValueError, OSError):
        return None
