"""Listing sources: fetching trending-paper listings over HTTP and parsing them into entries.

Three kinds of ``[[sources]]``: ``daily-papers`` (Hugging Face's JSON API),
``arxiv`` (a category's RSS or Atom feed) and ``dump`` (a text dump, as in
``DUMP_FORMAT.md``, at a URL).  ``http`` fetches, politely and within bounds;
each parser turns one response into a ``Parsed`` listing, item by item;
``backoff`` says when to ask again.  All of it is pure but the client, and the
client takes its transport as an argument: nothing here touches the store.
"""

from collections.abc import Callable

from digest.dumps import parse as parse_dump
from digest.errors import DumpError, SourceFailed
from digest.sources.arxiv import parse_arxiv
from digest.sources.daily_papers import parse_daily_papers
from digest.sources.listing import Parsed

__all__ = ["KINDS", "Parsed", "parse"]

KINDS = ("daily-papers", "arxiv", "dump")


def _dump(body: bytes, source: str) -> Parsed:
    """A dump is judged whole, as from the inbox: its first bad line rejects it."""
    try:
        dump = parse_dump(body, source)
    except DumpError as err:
        raise SourceFailed(
            str(err), hint="a dump is all or nothing; fix the file at its source"
        ) from None
    return Parsed(entries=dump.entries, listing_date=dump.listing_date)


_PARSERS: dict[str, Callable[[bytes, str], Parsed]] = {
    "daily-papers": parse_daily_papers,
    "arxiv": parse_arxiv,
    "dump": _dump,
}


def parse(kind: str, body: bytes, source: str) -> Parsed:
    """The entries of one response of a source of ``kind`` (one of ``KINDS``)."""
    try:
        parser = _PARSERS[kind]
    except KeyError:
        raise ValueError(f"unknown source kind {kind!r}; one of {', '.join(KINDS)}") from None
    return parser(body, source)
