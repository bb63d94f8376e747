"""Paper views: one paper as a digest shows it, made of its own parts and its reader's.

A paper of a send is in many of its digests.  What depends only on the paper (its
title made plain, its links, byline and badge, the places of the URLs in its
abstract) is made once per renderer and kept (``PaperViews``, the last ``KEPT``
papers); what depends on the reader (the excerpt around the words their filter
matched, with those words marked, and the signed feedback links) is made for each
digest.  A kept paper is used only while its row is equal: one seen again since is
made anew.
"""

import re
from dataclasses import dataclass

from digest.links import VERDICT_LABELS, Links
from digest.match import Match, trend_note
from digest.mime import CONTROL, clean
from digest.models import PaperRow
from digest.paper_links import PaperLinks, byline, links_of

KEPT = 4096  # papers whose own parts a renderer keeps: a send's window, as a rule
ABSTRACT_CHARS = 450
LATE_HIGHLIGHT = 300  # a first highlight ending after this moves the excerpt to it...
LEAD_CHARS = 100  # ...keeping about this much context before it
TEXT_WIDTH = 72
_LINE = re.compile(rf"(\S.{{0,{TEXT_WIDTH - 4}}})(?:\s+|$)|(\S+)\s*")  # a line, or a long word
Segment = tuple[str, bool]
Source = tuple[str, str, str]  # (url, visible label, accessible name)
Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PaperView:
    """One paper as both templates show it."""

    title: str
    url: str  # its arXiv abstract page when a source gave the id, else ``[digest] paper_url``
    byline: str  # "A, B and C", "A, B, C et al.", or empty (``paper_links.byline``)
    byline_text: str  # the same, wrapped for the text part
    sources: tuple[Source, ...]  # its PDF and Daily Papers pages, when the arXiv id is known
    badge: str
    matched: str
    segments: tuple[Segment, ...]  # the abstract excerpt; True marks a highlight
    text: str  # the same excerpt, *highlights* starred, wrapped for the text part
    code: tuple[tuple[str, str], ...]  # (url, label) of each repository link
    feedback: tuple[Source, ...]  # the reader's signed "More like this" and "Not for me"
    because: str = ""  # a suggestion's reason: the title of the liked paper nearest to it


@dataclass(frozen=True, slots=True)
class _Own:
    """The parts of a paper's view that are the same in every digest."""

    paper: PaperRow  # the row they were made from
    title: str
    url: str
    byline: str
    byline_text: str
    sources: tuple[Source, ...]
    badge: str
    code: tuple[tuple[str, str], ...]
    abstract: str  # control characters as spaces: the same length, so spans still hold
    urls: tuple[Span, ...]  # where the abstract's links are: no highlight inside one


class PaperViews:
    """Views of papers for one renderer (one thread), each paper's own parts made once."""

    def __init__(self, paper_url: str) -> None:
        self._paper_url = paper_url  # ``[digest] paper_url``
        self._kept: dict[str, _Own] = {}

    def view(self, match: Match, reader: Links) -> PaperView:
        own = self._own(match.paper)
        spans = [s for s in match.spans if not any(a < s[1] and s[0] < b for a, b in own.urls)]
        segments = _segments(own.abstract, spans, *_excerpt(own.abstract, spans))
        return PaperView(
            title=own.title,
            url=own.url,
            byline=own.byline,
            byline_text=own.byline_text,
            sources=own.sources,
            badge=own.badge,
            matched=", ".join(match.matched),
            segments=segments,
            text=_wrap("".join(f"*{text}*" if marked else text for text, marked in segments)),
            code=own.code,
            feedback=_feedback(reader, match.paper.id, own.title),
        )

    def __len__(self) -> int:
        """How many papers' own parts are kept."""
        return len(self._kept)

    def _own(self, paper: PaperRow) -> _Own:
        found = self._kept.get(paper.id)
        if found is not None and found.paper == paper:
            return found
        made = own_parts(paper, self._paper_url)
        if found is None and len(self._kept) >= KEPT:
            del self._kept[next(iter(self._kept))]  # the one kept longest
        self._kept[paper.id] = made
        return made


def own_parts(paper: PaperRow, paper_url: str) -> _Own:
    """What a paper shows whoever reads it."""
    links = links_of(paper, paper_url)
    title, names = clean(paper.title), byline(paper.meta.authors)
    abstract = CONTROL.sub(" ", paper.abstract)
    return _Own(
        paper=paper,
        title=title,
        url=links.abstract_url,
        byline=names,
        byline_text=_wrap(names),
        sources=_sources(links, title),
        badge=f"{'Trending' if paper.times_seen > 1 else 'New'}: {trend_note(paper)}",
        code=links.code,
        abstract=abstract,
        urls=tuple((at, at + len(url)) for url in paper.links if (at := abstract.find(url)) >= 0),
    )


def _sources(links: PaperLinks, title: str) -> tuple[Source, ...]:
    """The small links beside a title.  Their visible labels repeat on every paper, so each
    carries an accessible name that says whose it is (a screen reader's list of links)."""
    found: list[Source] = []
    if links.pdf_url:
        found.append((links.pdf_url, "PDF", f"PDF of {title}"))
    if links.daily_papers_url:
        found.append((links.daily_papers_url, "Daily Papers", f"{title} on Daily Papers"))
    return tuple(found)


def _feedback(reader: Links, paper_id: str, title: str) -> tuple[Source, ...]:
    """The two one-click verdicts, each named for its paper for a screen reader."""
    return tuple(
        (reader.feedback(paper_id, verdict), label, f"{label}: {title}")
        for verdict, label in VERDICT_LABELS.items()
    )


def _excerpt(text: str, spans: list[Span]) -> Span:
    """About ``ABSTRACT_CHARS`` of ``text`` cut at spaces, moved to a late first highlight."""
    if len(text) <= ABSTRACT_CHARS:
        return 0, len(text)
    start = 0
    if spans and spans[0][1] > LATE_HIGHLIGHT:
        space = text.find(" ", max(spans[0][0] - LEAD_CHARS, 0), spans[0][0])
        start = space + 1 if space >= 0 else spans[0][0]
    end = start + ABSTRACT_CHARS
    if end >= len(text):
        return start, len(text)
    space = text.rfind(" ", start, end + 1)
    return start, space if space > start else end


def _segments(text: str, spans: list[Span], start: int, end: int) -> tuple[Segment, ...]:
    """``text[start:end]`` split into plain and highlighted runs, with ``…`` where cut."""
    found: list[Segment] = [("…", False)] if start > 0 else []
    at = start
    for first, last in spans:
        first, last = max(first, start), min(last, end)
        if first >= last:
            continue
        if first > at:
            found.append((text[at:first], False))
        found.append((text[first:last], True))
        at = last
    if at < end:
        found.append((text[at:end], False))
    if end < len(text):
        if found and not found[-1][1]:
            found[-1] = (found[-1][0].rstrip(" ,;:"), False)
        found.append(("…", False))
    return tuple(found)


def _wrap(text: str) -> str:
    """Lines of at most ``TEXT_WIDTH`` characters, indented by 3 (a regex: C speed)."""
    return "\n   ".join(line or word for line, word in _LINE.findall(text))
