"""The links of a paper: URLs found in its abstract, its code repositories, its page; its byline.

Every place a reader sees a paper (digests, feeds, web pages, listings) takes its
links and its byline from here, so they agree and only http(s) URLs and plain
names ever reach a template.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:  # models imports this module (find_links): no import cycle at run time
    from digest.models import PaperRow

_URL = re.compile(r"https?://[^\s{}<>\"'\\|^`\[\]]+")
_URL_TAIL = ".,;:!?)'\""


def find_links(text: str) -> list[str]:
    """URLs in an abstract, in order, without LaTeX residue or trailing punctuation."""
    found: dict[str, None] = {}
    if "http" not in text:
        return []
    for match in _URL.finditer(text):
        url = match.group().rstrip(_URL_TAIL)
        if url.count("(") < url.count(")"):
            url = url[: url.rindex(")")]
        if len(url) > len("https://x.y"):
            found.setdefault(url, None)
    return list(found)


REPO_HOSTS = frozenset(
    {"github.com", "gitlab.com", "huggingface.co", "bitbucket.org", "codeberg.org"}
)


@lru_cache(maxsize=8192)
def paper_url(template: str, title: str) -> str:
    """``[digest] paper_url`` with ``{title}`` URL-encoded (cached: papers recur across digests)."""
    return template.replace("{title}", quote(title, safe=""))


def code_links(links: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """http(s) links to a repository host, labelled ``Code (host/path)``."""
    found = []
    for url in links:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").removeprefix("www.")
        except ValueError:
            continue
        path = parts.path.rstrip("/")
        if parts.scheme in ("http", "https") and host in REPO_HOSTS and path:
            found.append((url, f"Code ({host}{path})"))
    return tuple(found)


# a paper's own links and byline (issue 14: sources) ------------------------------------------

ARXIV = "https://arxiv.org"
DAILY_PAPERS = "https://huggingface.co/papers"
BYLINE_AUTHORS = 3  # a digest names this many, then "et al."
LISTED_AUTHORS = 20  # a paper page and a feed entry name this many, then "and N more"
NAME_CHARS = 100  # a longer name is cut with "…": a byline must never crowd out the papers
# Control characters, and the invisible marks that reorder text (RTL overrides, isolates): a
# name must not flip the direction of the names after it, nor of the line it is printed in.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NEW_STYLE_ID = re.compile(r"\d{4}\.\d{4,5}")  # Daily Papers pages exist only for these
_VERSION = re.compile(r"v\d+$")


@dataclass(frozen=True, slots=True)
class PaperLinks:
    """Where a reader can go from a paper; every URL is http(s), ready for any template.

    ``pdf_url`` and ``daily_papers_url`` need the arXiv id, so a paper from a text dump
    has neither, and its ``abstract_url`` is the configured search, as before sources.
    """

    abstract_url: str
    pdf_url: str | None
    daily_papers_url: str | None
    code: tuple[tuple[str, str], ...]  # (url, "Code (host/path)") of each repository


def links_of(paper: "PaperRow", search: str) -> PaperLinks:
    """``paper``'s links; ``search`` is ``[digest] paper_url``, for papers without an arXiv id."""
    code = _code(paper.meta.github, paper.links)
    path = _arxiv_path(paper.meta.arxiv_id)
    if path is None:
        return PaperLinks(paper_url(search, paper.title), None, None, code)
    base = _VERSION.sub("", path)
    daily = f"{DAILY_PAPERS}/{base}" if _NEW_STYLE_ID.fullmatch(base) else None
    return PaperLinks(f"{ARXIV}/abs/{path}", f"{ARXIV}/pdf/{path}", daily, code)


def _arxiv_path(arxiv_id: str | None) -> str | None:
    """The id as a URL path (``2411.01234v2``, ``hep-th/9901001``), or None when there is none.

    The sources' parsers validate ids; quoting anyway keeps any other id inside arxiv.org's
    ``/abs/`` (no query, no fragment, no ``..`` climbing out of it).
    """
    path = quote((arxiv_id or "").strip(), safe="/")
    if not path or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path


def _code(github: str | None, links: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The abstract's code links as before; a source's GitHub link first unless already there."""
    found = code_links(links)
    given = code_links([github]) if github else ()
    shown = {label.casefold() for _, label in found}
    return tuple(link for link in given if link[1].casefold() not in shown) + found


def plain_name(text: str) -> str:
    """One line of plain text from a source (an author, a category): no control or direction
    characters, spaces collapsed, at most ``NAME_CHARS``; empty when nothing is left."""
    name = " ".join(_INVISIBLE.sub(" ", text).split())
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1].rstrip() + "…"


def author_names(authors: Sequence[str], most: int | None = None) -> list[str]:
    """The first ``most`` (all when None) authors' names that are not empty once made plain."""
    names = (name for name in map(plain_name, authors) if name)
    return list(islice(names, most))


def byline(authors: Sequence[str]) -> str:
    """A digest's byline: ``A``; ``A and B``; ``A, B and C``; ``A, B, C et al.``; or empty.

    The one rule for every short byline (digests, previews, listings): three names show
    who wrote a paper; a fourth would rarely help the reader decide whether to read it.
    """
    names = author_names(authors, BYLINE_AUTHORS + 1)
    if len(names) > BYLINE_AUTHORS:
        return f"{', '.join(names[:BYLINE_AUTHORS])} et al."
    return _joined(names)


def full_byline(authors: Sequence[str]) -> str:
    """Where there is room (a paper's page): up to ``LISTED_AUTHORS`` names, then ``and N more``.

    A collaboration paper has thousands of authors: all of them would bury the abstract.
    """
    names = author_names(authors)
    if len(names) > LISTED_AUTHORS:
        return f"{', '.join(names[:LISTED_AUTHORS])} and {len(names) - LISTED_AUTHORS} more"
    return _joined(names)


def _joined(names: Sequence[str]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else "".join(names)
