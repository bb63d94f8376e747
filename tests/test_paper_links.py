"""A paper's links and byline: what every reader-facing place shows of a source's metadata."""

from urllib.parse import urlsplit

import pytest

from digest.models import NO_META, PaperMeta, PaperRow
from digest.paper_links import (
    LISTED_AUTHORS,
    NAME_CHARS,
    PaperLinks,
    author_names,
    byline,
    full_byline,
    links_of,
    paper_url,
    plain_name,
)

SEARCH = "https://arxiv.org/search/?query={title}&searchtype=title"
TITLE = "Agents & Tools: a study"


def row(meta: PaperMeta = NO_META, links: tuple[str, ...] = ()) -> PaperRow:
    return PaperRow(1, "0" * 16, TITLE, "An abstract.", list(links), "", 1, 1, "", meta)


# links ------------------------------------------------------------------------------------

LINKS = [
    ("2411.01234", "https://arxiv.org/abs/2411.01234", "https://arxiv.org/pdf/2411.01234", "https://huggingface.co/papers/2411.01234"),
    ("2411.01234v2", "https://arxiv.org/abs/2411.01234v2", "https://arxiv.org/pdf/2411.01234v2", "https://huggingface.co/papers/2411.01234"),
    ("hep-th/9901001", "https://arxiv.org/abs/hep-th/9901001", "https://arxiv.org/pdf/hep-th/9901001", None),
    (" 2411.01234 ", "https://arxiv.org/abs/2411.01234", "https://arxiv.org/pdf/2411.01234", "https://huggingface.co/papers/2411.01234"),
    ("2411.0?x=1#y", "https://arxiv.org/abs/2411.0%3Fx%3D1%23y", "https://arxiv.org/pdf/2411.0%3Fx%3D1%23y", None),
    ('1"><script>', "https://arxiv.org/abs/1%22%3E%3Cscript%3E", "https://arxiv.org/pdf/1%22%3E%3Cscript%3E", None),
]  # fmt: skip


@pytest.mark.parametrize(("arxiv_id", "abstract", "pdf", "daily"), LINKS)
def test_a_known_arxiv_id_links_to_the_abstract_the_pdf_and_daily_papers(
    arxiv_id: str, abstract: str, pdf: str, daily: str | None
) -> None:
    found = links_of(row(PaperMeta(arxiv_id=arxiv_id)), SEARCH)
    assert found == PaperLinks(abstract, pdf, daily, ())


@pytest.mark.parametrize("arxiv_id", [None, "", "  ", "..", "../../evil", "2411.01234/", "/x"])
def test_without_a_usable_arxiv_id_the_title_links_to_the_search_as_before(
    arxiv_id: str | None,
) -> None:
    found = links_of(row(PaperMeta(arxiv_id=arxiv_id, authors=("Ada",))), SEARCH)
    assert found == PaperLinks(paper_url(SEARCH, TITLE), None, None, ())
    assert (
        found.abstract_url
        == "https://arxiv.org/search/?query=Agents%20%26%20Tools%3A%20a%20study&searchtype=title"
    )


CODE = [
    (None, ["https://github.com/org/repo"], ["https://github.com/org/repo"]),
    ("https://github.com/org/repo", [], ["https://github.com/org/repo"]),
    ("https://github.com/org/repo", ["https://github.com/org/repo"], ["https://github.com/org/repo"]),
    ("https://github.com/Org/Repo/", ["https://github.com/org/repo"], ["https://github.com/org/repo"]),
    ("https://github.com/org/new", ["https://gitlab.com/g/p"], ["https://github.com/org/new", "https://gitlab.com/g/p"]),
    ("javascript:alert(1)//github.com/a/b", [], []),
    ("ftp://github.com/org/repo", [], []),
    ("https://example.org/not-a-repository", [], []),
    (None, ["https://github.com/a/b", "https://github.com/a/b/"], ["https://github.com/a/b", "https://github.com/a/b/"]),
]  # fmt: skip


@pytest.mark.parametrize(("github", "links", "shown"), CODE)
def test_the_sources_github_link_joins_the_abstracts_code_links_once(
    github: str | None, links: list[str], shown: list[str]
) -> None:
    found = links_of(row(PaperMeta(github=github), tuple(links)), SEARCH)
    assert [url for url, _ in found.code] == shown


@pytest.mark.parametrize("arxiv_id", [None, "2411.01234", "x/../y", "a b\r\nc"])
def test_every_link_is_http_or_https(arxiv_id: str | None) -> None:
    meta = PaperMeta(arxiv_id=arxiv_id, github="https://github.com/org/repo")
    found = links_of(row(meta, ("https://gitlab.com/g/p",)), SEARCH)
    urls = [found.abstract_url, found.pdf_url, found.daily_papers_url] + [u for u, _ in found.code]
    for url in filter(None, urls):
        assert urlsplit(url).scheme in ("http", "https")
        assert not any(c.isspace() or c in '<>"' for c in url)


# bylines ----------------------------------------------------------------------------------

BYLINES = [
    ((), ""),
    (("Ada Lovelace",), "Ada Lovelace"),
    (("Ada Lovelace", "Charles Babbage"), "Ada Lovelace and Charles Babbage"),
    (("A", "B", "C"), "A, B and C"),
    (("A", "B", "C", "D"), "A, B, C et al."),
    (tuple("ABCDEFGHIJ"), "A, B, C et al."),
    (("A", "", " \n ", "B"), "A and B"),
    (("A", "B", "", "C"), "A, B and C"),
]  # fmt: skip


@pytest.mark.parametrize(("authors", "expected"), BYLINES)
def test_a_byline_names_three_authors_then_et_al(authors: tuple[str, ...], expected: str) -> None:
    assert byline(authors) == expected


FULL_BYLINES = [
    ((), ""),
    (("A",), "A"),
    (("A", "B", "C", "D"), "A, B, C and D"),
    (tuple(f"N{i}" for i in range(LISTED_AUTHORS)), ", ".join(f"N{i}" for i in range(LISTED_AUTHORS - 1)) + f" and N{LISTED_AUTHORS - 1}"),
    (tuple(f"N{i}" for i in range(LISTED_AUTHORS + 7)), ", ".join(f"N{i}" for i in range(LISTED_AUTHORS)) + " and 7 more"),
]  # fmt: skip


@pytest.mark.parametrize(("authors", "expected"), FULL_BYLINES)
def test_a_full_byline_names_up_to_the_listed_authors_then_how_many_more(
    authors: tuple[str, ...], expected: str
) -> None:
    assert full_byline(authors) == expected


NAMES = [
    ("Ada Lovelace", "Ada Lovelace"),
    ("  Ada\r\n\tLovelace ", "Ada Lovelace"),
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # escaping is the template's job
    ('"Ada" O\'Brien', '"Ada" O\'Brien'),
    ("Eve\u202eecilA", "Eve ecilA"),  # an RTL override would flip the names after it
    ("\u2067Ali\u2069 \u200fKhan\u200e", "Ali Khan"),
    ("عليّ الحسن", "عليّ الحسن"),  # right-to-left script itself is kept
    ("Zoë\u2028Ünal", "Zoë Ünal"),
    ("\x00\x1b[31m", "[31m"),
    ("x" * 500, "x" * (NAME_CHARS - 1) + "…"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "shown"), NAMES)
def test_a_name_is_one_plain_line_without_direction_controls(name: str, shown: str) -> None:
    assert plain_name(name) == shown
    assert byline([name, "B"]) == f"{shown} and B"


def test_author_names_stops_at_most() -> None:
    assert author_names(["", "A", "B", "C"], 2) == ["A", "B"]
    assert author_names(("A", "B")) == ["A", "B"]
