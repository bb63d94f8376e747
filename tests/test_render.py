"""Rendering: golden digests, MIME structure and headers, escaping, sizes, subject, footer.

The golden files are regenerated with ``pytest --update-golden``; review their diff.
"""

import contextlib
import dataclasses
import email
import email.policy
import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from digest import backtest, links, match, paper_views, render
from digest.config import from_mapping
from digest.errors import QueryError
from digest.ingest import ingest_files
from digest.links import links_for
from digest.match import Match
from digest.models import NO_META, PaperMeta, PaperRow, Subscriber
from digest.query import Or, Phrase, Prefix, Term, highlights, parse
from digest.render import MAX_BYTES, DigestContent, Health, Renderer, message_id
from digest.stemming import Stemmer, words
from digest.store import Store

from .conftest import NOW, ROOT, copy_database

GOLDEN = Path(__file__).parent / "golden"
SENDER = "Paper Digest <digest@example.org>"
CONFIG = from_mapping(
    {
        "web": {"base_url": "https://digest.example.org"},
        "delivery": {"from": SENDER},
        "digest": {"max_papers": 10},
    }
)
FILTER = 'diffusion OR agents OR "language model" OR regulari*'
ADA = Subscriber(
    id=7,
    email="ada@example.org",
    name="Ada Lovelace",
    filter=FILTER,
    frequency="daily",
    format="html",
    status="active",
    source="cli",
    secret="fixed-secret-for-golden-files",
    bounces=0,
    created_at="2026-11-20T07:00:00Z",
    updated_at="2026-11-20T07:00:00Z",
)
FRESH = Health("2026-11-24T07:00:00Z", stale=False)
ABSTRACT = (
    "We propose a method for agents that plan with a language model and act in a simulated "
    "world, with a benchmark of long tasks and an analysis of failures. "
    "Code: https://github.com/example/agents."
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, seeded_database: Path) -> Iterator[Store]:
    """The seeds store, shared by this module (``seeded_digest`` caches on it): read only."""
    folder = tmp_path_factory.mktemp("render")
    with closing(Store(copy_database(seeded_database, folder))) as store:
        yield store


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(CONFIG)


def content_for(
    matches: list[Match],
    *,
    subscriber: Subscriber = ADA,
    more: int = 0,
    health: Health = FRESH,
    created_at: datetime = NOW,
) -> DigestContent:
    """The content the outbox would hand over: ``matches`` highlighted as matching does."""
    sender = CONFIG.delivery.from_
    with contextlib.suppress(QueryError):  # a filter stored before the rules: no highlights
        node = match.compile_filter(subscriber.filter)
        matches = match.highlighted(node, matches, match.shared_stemmer())
    return DigestContent(
        subscriber=subscriber,
        matches=matches,
        more=more,
        links=links_for(subscriber, CONFIG.web.base_url),
        health=health,
        created_at=created_at,
        message_id=message_id(subscriber, [m.paper.id for m in matches], sender),
    )


@functools.cache  # matching the seeds takes a while; the content is immutable
def seeded_digest(store: Store, cap: int = 10, subscriber: Subscriber = ADA) -> DigestContent:
    found = backtest.backtest(store, subscriber.filter)
    return content_for(found[:cap], subscriber=subscriber, more=len(found[:]) - cap)


def paper(
    n: int, title: str = "", abstract: str = ABSTRACT, meta: PaperMeta = NO_META, **trend: int
) -> Match:
    row = PaperRow(
        seq=n,
        id=f"{n:016x}",
        title=title or f"Paper number {n} about agents",
        abstract=abstract,
        links=re.findall(r"https?://[^\s]+[^\s.]", abstract),
        first_seen="2026-11-24T07:00:00Z",
        times_seen=trend.get("times_seen", 1),
        best_position=trend.get("best_position", n),
        last_seen="2026-11-24T07:00:00Z",
        meta=meta,
    )
    return Match(row, ["agents"], 1.0)


def parsed(data: bytes) -> EmailMessage:
    found = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(found, EmailMessage)
    return found


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    assert part.get_content_type() == f"text/{subtype}"
    return str(part.get_content()).replace("\r\n", "\n")


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def hrefs(self) -> list[str]:
        return [a["href"] or "" for tag, a in self.tags if tag == "a" and "href" in a]


# golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["html", "txt"])
def test_the_seed_digest_matches_its_golden_file(
    seeds: Store, renderer: Renderer, part: str, request: pytest.FixtureRequest
) -> None:
    content = seeded_digest(seeds)
    rendered = renderer.html(content) if part == "html" else renderer.text(content)
    golden = GOLDEN / f"digest.{part}"
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered, encoding="utf-8", newline="")
    assert golden.exists(), f"{golden} is missing: run pytest --update-golden and review it"
    expected = golden.read_text(encoding="utf-8")
    assert rendered == expected, (
        f"{golden.name} differs from the rendering: if the change is intended, run "
        "`.venv/bin/pytest tests/test_render.py --update-golden` and review the diff"
    )


SOURCED = [
    paper(
        1,
        "Agents that plan with a language model",
        meta=PaperMeta(
            arxiv_id="2411.01234",
            authors=("Ada Lovelace", "Charles Babbage", "Mary Somerville"),
            categories=("cs.AI", "cs.CL"),
            published="2026-11-20",
            upvotes=42,
            comments=5,
            github="https://github.com/example/agents",  # the abstract links it too: shown once
        ),
        times_seen=2,
        best_position=1,
    ),
    paper(
        2,
        "A large collaboration on agents",
        abstract="Agents, measured by many hands over many years.",
        meta=PaperMeta(
            arxiv_id="2411.00002v3",
            authors=tuple(f"Author Number{i}" for i in range(1, 40)),
            upvotes=1,
            github="https://github.com/collab/agents-kit",
        ),
    ),
    paper(
        3,
        "Old-style agents",
        meta=PaperMeta(arxiv_id="cs/0112017", authors=("Grace Hopper", "Alan Turing")),
    ),
    paper(4, "Agents known by name only", meta=PaperMeta(authors=("Émilie du Châtelet",))),
    paper(5, "Agents from a text dump"),  # no meta: exactly as before sources
]


@pytest.mark.parametrize("part", ["html", "txt"])
def test_a_digest_of_papers_from_sources_matches_its_golden_file(
    renderer: Renderer, part: str, request: pytest.FixtureRequest
) -> None:
    content = content_for(SOURCED)
    rendered = renderer.html(content) if part == "html" else renderer.text(content)
    golden = GOLDEN / f"digest-sources.{part}"
    if request.config.getoption("--update-golden"):
        golden.write_text(rendered, encoding="utf-8", newline="")
    assert golden.exists(), f"{golden} is missing: run pytest --update-golden and review it"
    assert rendered == golden.read_text(encoding="utf-8"), (
        f"{golden.name} differs from the rendering: if the change is intended, run "
        "`.venv/bin/pytest tests/test_render.py --update-golden` and review the diff"
    )


# the message: structure, encodings, headers ---------------------------------------------


def test_a_message_is_quoted_printable_text_then_7bit_html_both_utf8(
    seeds: Store, renderer: Renderer
) -> None:
    content = seeded_digest(seeds)
    message = parsed(renderer.message(content))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert {p.get_content_charset() for p in parts} == {"utf-8"}
    assert [p["Content-Transfer-Encoding"] for p in parts] == ["quoted-printable", "7bit"]
    assert body(message, "plain") == renderer.text(content)
    html = renderer.html(content)
    assert not html.isascii()  # the seeds' text and the template's separators
    assert body(message, "html") == html.encode("ascii", "xmlcharrefreplace").decode()
    assert Tags(body(message, "html")).text == Tags(html).text


def test_a_message_is_ascii_with_crlf_lines_short_in_text_and_under_998_in_html(
    seeds: Store, renderer: Renderer
) -> None:
    """RFC 5322: lines of at most 998 characters (SpamAssassin's LONGLINE fires at 998), and
    the text part, which people read as it is, in quoted-printable lines of 76."""
    data = renderer.message(seeded_digest(seeds))
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")  # what a Maildir file drops (mailer)
    assert max(len(line) for line in data.split(b"\r\n")) <= 997
    text_part, html_part = data.split(b"\r\n--=_digest_")[1:3]
    assert max(len(line) for line in text_part.split(b"\r\n")) <= 76
    assert max(len(line) for line in html_part.split(b"\r\n")) > 78  # not cut, not QP


def test_rendering_is_deterministic(seeds: Store, renderer: Renderer) -> None:
    content = seeded_digest(seeds)
    assert renderer.message(content) == renderer.message(content)


HEADERS = [
    ("From", "Paper Digest <digest@example.org>"),
    ("To", "Ada Lovelace <ada@example.org>"),
    ("Subject", '10 new papers: diffusion, agents, "language model", regulari* — Nov 24'),
    ("Date", "Tue, 24 Nov 2026 07:00:00 +0000"),
    ("List-Id", "Paper Digest <digest.example.org>"),
    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ("Auto-Submitted", "auto-generated"),
    ("Precedence", "bulk"),
    ("MIME-Version", "1.0"),
]


@pytest.mark.parametrize(("name", "value"), HEADERS)
def test_every_required_header_is_present(
    seeds: Store, renderer: Renderer, name: str, value: str
) -> None:
    message = parsed(renderer.message(seeded_digest(seeds)))
    assert message.get_all(name) == [value]


def test_message_id_and_list_unsubscribe_come_from_the_content(
    seeds: Store, renderer: Renderer
) -> None:
    content = seeded_digest(seeds)
    message = parsed(renderer.message(content))
    assert message["Message-ID"] == content.message_id
    links = content.links
    assert links.unsubscribe.startswith("https://digest.example.org/unsubscribe/7-")
    assert message["List-Unsubscribe"] == f"<{links.unsubscribe}>"  # one https URL, no mailto
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_text_only_subscriber_gets_one_plain_part_with_the_same_headers(
    seeds: Store, renderer: Renderer
) -> None:
    plain = dataclasses.replace(ADA, format="text")
    content = seeded_digest(seeds, subscriber=plain)
    message = parsed(renderer.message(content))
    assert message.get_content_type() == "text/plain"
    assert str(message.get_content()).replace("\r\n", "\n") == renderer.text(content)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Subject"] == renderer.subject(content)


def test_date_and_subject_day_are_in_utc(renderer: Renderer) -> None:
    late_evening = datetime(2026, 11, 24, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    content = content_for([paper(1)], created_at=late_evening)
    message = parsed(renderer.message(content))
    assert message["Date"] == "Wed, 25 Nov 2026 04:30:00 +0000"
    assert message["Subject"].endswith("— Nov 25")


ADDRESSES = [
    ("Ada Lovelace", "ada@example.org", "Ada Lovelace <ada@example.org>"),
    ("Lovelace, Ada", "ada@example.org", '"Lovelace, Ada" <ada@example.org>'),
    ("Zoë Ünal", "zoe@example.org", "Zoë Ünal <zoe@example.org>"),
    ("", "ada@example.org", "ada@example.org"),
    ("Ada", "ada@bücher.example", "Ada <ada@xn--bcher-kva.example>"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "address", "expected"), ADDRESSES)
def test_the_to_header_carries_the_display_name(
    renderer: Renderer, name: str, address: str, expected: str
) -> None:
    person = dataclasses.replace(ADA, name=name, email=address)
    message = parsed(renderer.message(content_for([paper(1)], subscriber=person)))
    assert message["To"] == expected


# what cannot get in ---------------------------------------------------------------------

INJECTIONS = [
    ("name", "Ada\r\nBcc: eve@example.org"),
    ("name", "Ada\nBcc: eve@example.org"),
    ("name", "Ada\rBcc: eve@example.org"),
    ("filter", "agents\r\nBcc: eve@example.org"),
    ("filter", "agents\nSubject: free money"),
    ("email", "ada@example.org\r\nBcc: eve@example.org"),
]


@pytest.mark.parametrize(("field", "value"), INJECTIONS)
def test_no_header_can_be_injected_through_a_subscriber_field(
    renderer: Renderer, field: str, value: str
) -> None:
    plain = parsed(renderer.message(content_for([paper(1)])))
    hostile = dataclasses.replace(ADA, **{field: value})  # type: ignore[arg-type]
    message = parsed(renderer.message(content_for([paper(1)], subscriber=hostile)))
    assert message["Bcc"] is None
    assert len(message.keys()) == len(plain.keys())
    assert len(message.get_all("Subject") or []) == 1
    assert all("\r" not in v and "\n" not in v for v in message.values())


def test_no_header_can_be_injected_through_a_title(renderer: Renderer) -> None:
    plain = parsed(renderer.message(content_for([paper(1)])))
    hostile = paper(1, title="A paper\r\nBcc: eve@example.org\r\n\r\n<b>body</b>")
    message = parsed(renderer.message(content_for([hostile])))
    assert message["Bcc"] is None
    assert len(message.keys()) == len(plain.keys())
    assert "A paper Bcc: eve@example.org &lt;b&gt;body&lt;/b&gt;" in body(message, "html")


CONFIRM_LINK = "https://digest.example.org/confirm/eyJ0b2tlbiI.abc"


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("confirm", "Confirm your subscription to Paper Digest"),
        ("known", "You are already subscribed to Paper Digest"),
    ],
)
def test_a_confirmation_mail_takes_the_digests_path(
    renderer: Renderer, kind: render.ConfirmKind, subject: str
) -> None:
    data = renderer.confirmation(
        kind, "ada@example.org", 'agents -"<b>x</b>"', CONFIRM_LINK, NOW, "<confirm.1@example.org>"
    )
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF, like every mail we send
    assert data.isascii()
    message = parsed(data)
    assert [part.defects for part in message.walk()] == [[], [], []]
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert [(name, message[name]) for name in ("From", "To", "Subject", "Date")] == [
        ("From", SENDER),
        ("To", "ada@example.org"),
        ("Subject", subject),
        ("Date", "Tue, 24 Nov 2026 07:00:00 +0000"),
    ]
    assert message["Message-ID"] == "<confirm.1@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert CONFIRM_LINK in body(message, "plain")
    assert f'href="{CONFIRM_LINK}"' in body(message, "html")
    if kind == "confirm":
        assert 'agents -"<b>x</b>"' in body(message, "plain")
        assert "agents -&#34;&lt;b&gt;x&lt;/b&gt;&#34;" in body(message, "html")


def test_no_header_can_be_injected_through_a_confirmation(renderer: Renderer) -> None:
    data = renderer.confirmation(
        "confirm", "ada@example.org\r\nBcc: eve@example.org", "agents", CONFIRM_LINK, NOW, "<c@x>"
    )
    message = parsed(data)
    assert message["Bcc"] is None
    assert all("\r" not in v and "\n" not in v for v in message.values())


def test_confirmation_ids_are_fresh_and_at_the_senders_domain() -> None:
    first, second = render.confirmation_id(SENDER), render.confirmation_id(SENDER)
    assert first != second
    assert re.fullmatch(r"<confirm\.[0-9a-f]{16}@example\.org>", first)


HOSTILE_TITLES = [
    "<script>alert(1)</script> Agents that escape",
    '"><img src=x onerror=alert(1)> Agents in attributes',
    '</a></td></tr></table><a href="javascript:alert(1)">agents</a>',
    "Agents & <b>bold</b> claims about 'quotes'",
]


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A crafted dump whose titles (and an abstract) try to become markup."""
    folder = tmp_path_factory.mktemp("hostile")
    abstract = ABSTRACT + ' <iframe src="https://evil.example/"></iframe> "><svg onload=alert(1)>'
    entries = "".join(f"{title}\n\n{abstract}\n\n" for title in HOSTILE_TITLES)
    dump = folder / "hostile.txt"
    dump.write_text(f"Daily Papers\n\nNov 24\n\n{entries}", encoding="utf-8")
    store = Store(folder / "digest.db")
    report = ingest_files(store, [dump], NOW)
    assert report.files[0].status == "ingested", report.files[0].error
    yield store
    store.close()


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_a_hostile_title_is_text_in_every_part_never_markup(
    hostile_store: Store, renderer: Renderer, title: str
) -> None:
    person = dataclasses.replace(ADA, filter="agents")
    message = parsed(renderer.message(seeded_digest(hostile_store, subscriber=person)))
    html, text = body(message, "html"), body(message, "plain")
    tags = Tags(html)
    assert {tag for tag, _ in tags.tags} <= {
        "html", "head", "meta", "title", "style", "body", "table", "tbody", "tr", "td",
        "h1", "p", "span", "a", "strong",
    }  # fmt: skip
    assert title in "".join(tags.text)
    assert all(href.startswith("https://") for href in tags.hrefs())
    assert not any(name.startswith("on") for _, attrs in tags.tags for name in attrs)
    assert title in text


HOSTILE_AUTHORS = [
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ('"><img src=x onerror=alert(1)>', '"><img src=x onerror=alert(1)>'),
    ("O'Brien & \"Quotes\"", "O'Brien & \"Quotes\""),
    ("Eve\u202eliam.ecnalevol@ada", "Eve liam.ecnalevol@ada"),
    ("\u2067Isolated\u2069 \u200fMarks", "Isolated Marks"),
    ("Ada\r\nBcc: eve@example.org\r\n\r\n<b>body</b>", "Ada Bcc: eve@example.org <b>body</b>"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "shown"), HOSTILE_AUTHORS)
def test_a_hostile_author_name_is_plain_text_in_every_part(
    renderer: Renderer, name: str, shown: str
) -> None:
    meta = PaperMeta(arxiv_id="2411.01234", authors=(name, "Grace Hopper"))
    plain = parsed(renderer.message(content_for([paper(1)])))
    message = parsed(renderer.message(content_for([paper(1, meta=meta)])))
    assert message["Bcc"] is None
    assert len(message.keys()) == len(plain.keys())
    html, text = body(message, "html"), body(message, "plain")
    tags = Tags(html)
    assert {tag for tag, _ in tags.tags} <= {
        "html", "head", "meta", "title", "style", "body", "table", "tbody", "tr", "td",
        "h1", "p", "span", "a", "strong",
    }  # fmt: skip
    assert not any(name.startswith("on") for _, attrs in tags.tags for name in attrs)
    assert f"{shown} and Grace Hopper" in "".join(tags.text)
    assert f"   {shown} and Grace Hopper\n" in text
    assert not any(c in html + text for c in "\u202e\u2067\u2069\u200f")


def test_a_hostile_filter_is_text_in_the_subject_and_the_html(renderer: Renderer) -> None:
    person = dataclasses.replace(ADA, filter='"<script>alert(1)</script>" OR agents')
    content = content_for([paper(1)], subscriber=person)
    message = parsed(renderer.message(content))
    assert message["Subject"] == '1 new paper: "<script>alert(1)</script>", agents — Nov 24'
    html = body(message, "html")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_there_are_no_images_scripts_or_remote_resources(seeds: Store, renderer: Renderer) -> None:
    html = renderer.html(seeded_digest(seeds))
    tags = Tags(html)
    names = {tag for tag, _ in tags.tags}
    assert not names & {"img", "script", "link", "iframe", "object", "embed", "video", "audio"}
    sources = [a for _, attrs in tags.tags for k, a in attrs.items() if k in {"src", "background"}]
    assert sources == []
    assert "url(" not in html
    assert "@import" not in html


def test_css_is_inlined_and_dark_mode_rules_are_kept(seeds: Store, renderer: Renderer) -> None:
    html = renderer.html(seeded_digest(seeds))
    tags = Tags(html)
    styled = {attrs.get("class"): attrs.get("style") for _, attrs in tags.tags if "class" in attrs}
    assert "color: #1d4ed8" in (styled["title"] or "")
    assert "padding" in (styled["paper"] or "")
    assert "@media (prefers-color-scheme: dark)" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert 'name="viewport"' in html


# links ------------------------------------------------------------------------------------


def paper_url(title: str) -> str:
    return f"https://arxiv.org/search/?query={quote(title, safe='')}&searchtype=title"


def test_every_paper_and_code_link_is_in_both_parts(seeds: Store, renderer: Renderer) -> None:
    content = seeded_digest(seeds)
    message = parsed(renderer.message(content))
    hrefs, text = Tags(body(message, "html")).hrefs(), body(message, "plain")
    code = [u for m in content.matches for u in m.paper.links if "github.com/" in u]
    assert code, "the seed digest should show at least one code link"
    for url in [paper_url(m.paper.title) for m in content.matches] + code:
        assert url in hrefs
        assert url in text


@pytest.mark.parametrize("kind", ["manage", "unsubscribe", "feed_atom", "feed_rss"])
def test_the_footer_links_are_in_both_parts(seeds: Store, renderer: Renderer, kind: str) -> None:
    content = seeded_digest(seeds)
    message = parsed(renderer.message(content))
    url = getattr(content.links, kind)
    assert url.startswith("https://digest.example.org/")
    assert url in Tags(body(message, "html")).hrefs()
    assert url in body(message, "plain")


@pytest.mark.parametrize(
    "title",
    ["Attention Is All You Need", "Q&A: what? #1 / 50% off + more", "Ünïcödé — “quotes”"],
)
def test_a_title_links_through_paper_url_url_encoded(renderer: Renderer, title: str) -> None:
    html = renderer.html(content_for([paper(1, title=title)]))
    assert paper_url(title) in Tags(html).hrefs()


def test_paper_url_is_configurable(renderer: Renderer) -> None:
    config = from_mapping({"digest": {"paper_url": "https://papers.example/s?q={title}"}})
    html = Renderer(config).html(content_for([paper(1, title="A b&c")]))
    assert "https://papers.example/s?q=A%20b%26c" in Tags(html).hrefs()


def test_a_paper_from_a_source_links_its_abstract_pdf_daily_papers_and_code_in_both_parts(
    renderer: Renderer,
) -> None:
    message = parsed(renderer.message(content_for(SOURCED[:2])))
    hrefs, text = Tags(body(message, "html")).hrefs(), body(message, "plain")
    for url in [
        "https://arxiv.org/abs/2411.01234",
        "https://arxiv.org/pdf/2411.01234",
        "https://huggingface.co/papers/2411.01234",
        "https://github.com/example/agents",
        "https://arxiv.org/abs/2411.00002v3",
        "https://arxiv.org/pdf/2411.00002v3",
        "https://huggingface.co/papers/2411.00002",
        "https://github.com/collab/agents-kit",
    ]:
        assert hrefs.count(url) == 1, url
        assert text.count(f"{url}\n") == 1, url
    assert all(href.startswith("https://") for href in hrefs)


def test_the_small_links_say_whose_they_are_to_a_screen_reader(renderer: Renderer) -> None:
    tags = Tags(renderer.html(content_for(SOURCED)))
    named = [(a["aria-label"] or "", a["href"]) for tag, a in tags.tags if "aria-label" in a]
    assert [label for label, _ in named] == [
        "PDF of Agents that plan with a language model",
        "Agents that plan with a language model on Daily Papers",
        "More like this: Agents that plan with a language model",
        "Not for me: Agents that plan with a language model",
        "PDF of A large collaboration on agents",
        "A large collaboration on agents on Daily Papers",
        "More like this: A large collaboration on agents",
        "Not for me: A large collaboration on agents",
        "PDF of Old-style agents",
        "More like this: Old-style agents",
        "Not for me: Old-style agents",
        "More like this: Agents known by name only",
        "Not for me: Agents known by name only",
        "More like this: Agents from a text dump",
        "Not for me: Agents from a text dump",
    ]
    assert len({label for label, _ in named}) == len(
        named
    )  # distinct; each holds its visible label


def test_every_paper_carries_its_readers_signed_verdict_links_in_both_parts(
    seeds: Store, renderer: Renderer
) -> None:
    content = seeded_digest(seeds)
    message = parsed(renderer.message(content))
    hrefs, text = Tags(body(message, "html")).hrefs(), body(message, "plain")
    base = CONFIG.web.base_url
    lines = [line for line in text.splitlines() if "/feedback/" in line]
    assert len(lines) == len(content.matches)  # one line per paper in the text part
    for found, line in zip(content.matches, lines, strict=True):
        more, less = (links.feedback_path(ADA, found.paper.id, v) for v in ("more", "less"))
        assert line == f"   More like this: {base}{more} · Not for me: {base}{less}"
        assert base + more in hrefs
        assert base + less in hrefs
        token = more.split("/")[2]
        assert links.resolve_feedback(token, found.paper.id, "more", {ADA.id: ADA}.get) == ADA
        assert links.resolve_feedback(token, found.paper.id, "less", {ADA.id: ADA}.get) is None


def test_a_paper_without_an_arxiv_id_has_no_pdf_or_daily_papers_link(renderer: Renderer) -> None:
    content = content_for(SOURCED[3:])
    html, text = renderer.html(content), renderer.text(content)
    assert "arxiv.org/pdf" not in html + text
    assert "huggingface.co/papers" not in html + text
    assert 'class="meta sources"' not in html
    assert html.count('class="meta byline"') == 1  # the named paper; the text dump's has none


CODE_LINKS = [
    ("https://github.com/org/repo", "Code (github.com/org/repo)"),
    ("https://www.github.com/org/repo/", "Code (github.com/org/repo)"),
    ("https://gitlab.com/group/project", "Code (gitlab.com/group/project)"),
    ("https://huggingface.co/org/model", "Code (huggingface.co/org/model)"),
    ("http://bitbucket.org/team/repo", "Code (bitbucket.org/team/repo)"),
    ("https://github.com", None),
    ("https://example.org/project-page", None),
    ("ftp://github.com/org/repo", None),
]  # fmt: skip


@pytest.mark.parametrize(("url", "label"), CODE_LINKS)
def test_a_code_link_is_shown_for_each_repository_url(
    renderer: Renderer, url: str, label: str | None
) -> None:
    found = paper(1, abstract=ABSTRACT)
    row = dataclasses.replace(found.paper, links=[url])
    html = renderer.html(content_for([Match(row, ["agents"], 1.0)]))
    tags = Tags(html)
    shown = [a["href"] for tag, a in tags.tags if tag == "a" and a.get("class") == "link"]
    if label is None:
        assert url not in shown
    else:
        assert url in shown
        assert label in "".join(tags.text)


# content of each paper ---------------------------------------------------------------------


BADGES = [
    (3, 2, "Trending: seen in 3 listings, best #2"),
    (1, 14, "New: listed once at #14"),
]  # fmt: skip


@pytest.mark.parametrize(("times_seen", "best", "badge"), BADGES)
def test_the_trend_badge(renderer: Renderer, times_seen: int, best: int, badge: str) -> None:
    content = content_for([paper(1, times_seen=times_seen, best_position=best)])
    assert badge in renderer.html(content)
    assert badge in renderer.text(content)


UPVOTES = [
    (None, 1, "New: listed once at #1"),
    (0, 1, "New: listed once at #1"),
    (1, 1, "New: 1 upvote, listed once at #1"),
    (42, 3, "Trending: 42 upvotes, seen in 3 listings, best #1"),
]  # fmt: skip


@pytest.mark.parametrize(("upvotes", "times_seen", "badge"), UPVOTES)
def test_the_trend_badge_leads_with_a_sources_upvotes(
    renderer: Renderer, upvotes: int | None, times_seen: int, badge: str
) -> None:
    found = paper(1, meta=PaperMeta(upvotes=upvotes), times_seen=times_seen)
    content = content_for([found])
    assert f"{badge} · matched" in renderer.html(content)
    assert f"   {badge} · matched" in renderer.text(content)


def test_each_paper_says_which_terms_it_matched(seeds: Store, renderer: Renderer) -> None:
    content = seeded_digest(seeds)
    text = renderer.text(content)
    for found in content.matches:
        assert f"matched: {', '.join(found.matched)}" in text


def test_matched_terms_are_highlighted_in_both_parts(renderer: Renderer) -> None:
    person = dataclasses.replace(ADA, filter='agent "language model" simul*')
    content = content_for([paper(1)], subscriber=person)
    html, text = renderer.html(content), renderer.text(content)
    for word in ("agents", "language model", "simulated"):
        assert re.search(rf'<strong class="hl"[^>]*>{word}</strong>', html), word
        assert f"*{word}*" in text


def test_a_short_abstract_is_shown_whole_and_urls_are_never_highlighted(
    renderer: Renderer,
) -> None:
    person = dataclasses.replace(ADA, filter="agents")
    text = renderer.text(content_for([paper(1)], subscriber=person))
    shown = ABSTRACT.replace("for agents", "for *agents*")
    assert shown.endswith("https://github.com/example/agents.")
    assert " ".join(shown.split()) in " ".join(text.split())


def test_a_long_abstract_is_cut_at_a_word_boundary(renderer: Renderer) -> None:
    long = " ".join(f"word{i}" for i in range(400))
    html = renderer.html(content_for([paper(1, abstract=long)]))
    [shown] = re.findall(r'<p class="abstract"[^>]*>(.*?)</p>', html)
    assert shown.endswith("…")
    assert 300 < len(shown) <= paper_views.ABSTRACT_CHARS + 1
    assert long.startswith(shown[:-1])
    assert long[len(shown) - 1] == " "


def test_a_late_first_match_moves_the_excerpt_to_it(renderer: Renderer) -> None:
    long = " ".join(f"word{i}" for i in range(300)) + " agents " + "tail " * 100
    html = renderer.html(content_for([paper(1, abstract=long)]))
    [shown] = re.findall(r'<p class="abstract"[^>]*>(.*?)</p>', html)
    assert shown.startswith("…word")
    assert "<strong" in shown
    assert shown.endswith("…")


# subject -------------------------------------------------------------------------------------


SUBJECTS = [
    (1, "agents", "1 new paper: agents — Nov 24"),
    (7, "diffusion agents", "7 new papers: diffusion, agents — Nov 24"),
    (0, "agents", "No new papers: agents — Nov 24"),
    (2, 'diffusion -video title:"world model"', '2 new papers: diffusion, "world model" — Nov 24'),
    (2, "agents agents OR agents", "2 new papers: agents — Nov 24"),
    (3, " ".join(f"term{i}" for i in range(30)), "3 new papers: term0, term1, term2, term3, term4, term5, term6, … — Nov 24"),
    (2, "a" * 120, "2 new papers: " + "a" * 54 + "… — Nov 24"),
    (2, "agents\r\nBcc: eve@example.org", "2 new papers: agents Bcc: eve@example.org — Nov 24"),
]  # fmt: skip


@pytest.mark.parametrize(("count", "query", "subject"), SUBJECTS)
def test_the_subject_says_what_is_inside(
    renderer: Renderer, count: int, query: str, subject: str
) -> None:
    person = dataclasses.replace(ADA, filter=query)
    content = content_for([paper(n) for n in range(1, count + 1)], subscriber=person)
    assert renderer.subject(content) == subject
    assert len(subject) <= 78
    assert parsed(renderer.message(content))["Subject"] == subject


def test_an_empty_digest_says_so(renderer: Renderer) -> None:
    content = content_for([])
    fitted, data = renderer.fit(content)
    assert fitted == content
    message = parsed(data)
    subject = 'No new papers: diffusion, agents, "language model", regulari* — Nov 24'
    assert message["Subject"] == subject
    for part in (body(message, "plain"), "".join(Tags(body(message, "html")).text)):
        assert "Nothing new matched your filter this time." in part
        assert "Your filter:" in part


# footer --------------------------------------------------------------------------------------


HEALTH_LINES = [
    (FRESH, ["Papers as of the newest listing, ingested 2026-11-24 07:00 UTC."], 0),
    (Health(None, False), ["No listing has been ingested yet: there were no papers to match."], 1),
    (Health("2026-11-22T06:00:00Z", True), ["No new listing has arrived since 2026-11-22 06:00 UTC."], 1),
]  # fmt: skip


@pytest.mark.parametrize(("health", "lines", "warnings"), HEALTH_LINES)
def test_the_health_line(
    renderer: Renderer, health: Health, lines: list[str], warnings: int
) -> None:
    content = content_for([paper(1)], health=health)
    html, text = renderer.html(content), renderer.text(content)
    for line in lines:
        assert line in text
        assert line in html
    assert len(re.findall(r'<p class="warning"', html)) == warnings


MORE_LINES = [
    (0, None),
    (1, "1 more paper matches — see them all"),
    (12, "12 more papers match — see them all"),
]  # fmt: skip


@pytest.mark.parametrize(("more", "line"), MORE_LINES)
def test_the_more_line_when_capped(renderer: Renderer, more: int, line: str | None) -> None:
    content = content_for([paper(1)], more=more)
    html, text = renderer.html(content), renderer.text(content)
    if line is None:
        assert "more paper" not in text
        assert "more paper" not in html
    else:
        url = content.links.more(content.message_id)
        mark = content.message_id.split(".")[2].split("@")[0]
        assert url == f"{content.links.matches}/{mark}"
        assert url.startswith("https://digest.example.org/matches/7-")
        assert f"{line}: {url}" in text
        plain = "".join(Tags(html).text)
        assert line in plain
        assert url in Tags(html).hrefs()


def test_the_footer_shows_the_filter_and_the_address(seeds: Store, renderer: Renderer) -> None:
    content = seeded_digest(seeds)
    for part in (renderer.text(content), "".join(Tags(renderer.html(content)).text)):
        assert f"Your filter: {FILTER}" in part
        assert "Sent to ada@example.org." in part


# size ----------------------------------------------------------------------------------------


def test_a_25_paper_seed_digest_is_well_under_100_kb(seeds: Store, renderer: Renderer) -> None:
    content = seeded_digest(seeds, cap=25)
    assert len(content.matches) == 25
    fitted, data = renderer.fit(content)
    assert fitted == content
    assert len(data) < MAX_BYTES
    assert data == renderer.message(content)


def huge_digest(count: int) -> DigestContent:
    """Papers with 300-character titles and abstracts of 20,000 characters, many links."""
    links = " ".join(f"https://github.com/org{i}/repository-with-a-long-name-{i}" for i in range(6))
    matches = [
        paper(
            n, title=f"{n:03d} " + "Agents " * 42 + "x" * 2, abstract=(ABSTRACT + " ") * 90 + links
        )
        for n in range(1, 81)
    ]
    assert all(len(m.paper.title) <= 300 and len(m.paper.abstract) <= 20_000 for m in matches)
    return content_for(matches, more=5)


def test_fit_moves_the_overflow_into_more(renderer: Renderer) -> None:
    content = huge_digest(80)
    assert len(renderer.message(content)) > MAX_BYTES
    fitted, data = renderer.fit(content)
    kept = len(fitted.matches)
    assert 0 < kept < 80
    assert len(data) < MAX_BYTES
    assert data == renderer.message(fitted)
    assert fitted.matches == content.matches[:kept]
    assert fitted.more == content.more + (80 - kept)
    assert fitted.message_id == content.message_id
    one_more = dataclasses.replace(content, matches=content.matches[: kept + 1])
    assert len(renderer.message(one_more)) >= MAX_BYTES, "fit() should keep as many as fit"
    text = body(parsed(data), "plain")
    assert f"{fitted.more} more papers match — see them all" in text


def test_bylines_of_countless_long_names_still_fit(renderer: Renderer) -> None:
    """A collaboration paper lists thousands of authors; a hostile source, endless names."""
    names = tuple(f"{i:04d} " + "Longname " * 60 for i in range(3000))
    matches = [
        paper(n, meta=PaperMeta(arxiv_id=f"2411.{n:05d}", authors=names, upvotes=n))
        for n in range(1, 201)
    ]
    content = content_for(matches)
    fitted, data = renderer.fit(content)
    assert 25 <= len(fitted.matches) < 200  # a whole digest (max_papers) fits
    assert len(data) < MAX_BYTES
    text = body(parsed(data), "plain")
    assert text.count(" et al.\n") == len(fitted.matches)
    assert "0003 Longname" not in text  # only the first three names, each cut short
    assert max(len(line) for line in text.splitlines() if "Longname" in line) <= 72  # wrapped


# message ids -------------------------------------------------------------------------------


def test_message_ids_are_deterministic_and_unique_per_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_dns() -> str:
        raise AssertionError("socket.getfqdn() must not be called")

    monkeypatch.setattr("socket.getfqdn", no_dns)
    first = message_id(ADA, ["a1", "b2"], SENDER)
    assert re.fullmatch(r"<digest\.7\.[0-9a-f]{16}@example\.org>", first)
    assert message_id(ADA, ["b2", "a1"], SENDER) == first
    assert message_id(ADA, ["a1", "b2", "c3"], SENDER) != first
    assert message_id(dataclasses.replace(ADA, id=8), ["a1", "b2"], SENDER) != first
    assert message_id(ADA, ["a1"], "News <news@Lists.Example.NET>").endswith("@lists.example.net>")
    assert message_id(ADA, ["a1"], "not an address").endswith("@localhost>")


# highlighting (query.highlights) -------------------------------------------------------------


HIGHLIGHTS = [
    ("agents", "An agent and two Agents.", "abstract", ["agent", "Agents"]),
    ("agent", "agents, agency, agentic", "abstract", ["agents", "agentic"]),
    ("regulari*", "Regularization, regularizer and regular", "abstract", ["Regularization", "regularizer"]),
    ('"language model"', "large language models; a language of models", "abstract", ["language models"]),
    ('"large language model"', "LARGE  Language-Models here", "abstract", ["LARGE  Language-Models"]),
    ("diffusion -video", "video diffusion", "abstract", ["diffusion"]),
    ("title:agents", "agents", "abstract", []),
    ("title:agents", "agents", None, ["agents"]),
    ("abstract:agents", "agents", "abstract", ["agents"]),
    ("café", "Cafe and CAFÉ and cafés", "abstract", ["Cafe", "CAFÉ", "cafés"]),
    ("ai", "AI-based ai, aid", "abstract", ["AI", "ai"]),
    ("3d", "3D and 3d-aware", "abstract", ["3D", "3d"]),
    ("agents OR agent", "agents", "abstract", ["agents"]),
    ('"agents plan" agents', "agents plan", "abstract", ["agents plan"]),
]  # fmt: skip


@pytest.mark.parametrize(("query", "text", "field", "expected"), HIGHLIGHTS)
def test_highlights_are_the_words_the_filter_matched(
    query: str, text: str, field: str | None, expected: list[str]
) -> None:
    spans = highlights(parse(query), text, Stemmer(), field)
    assert [text[start:end] for start, end in spans] == expected


def reference_highlights(query: str, text: str, stemmer: Stemmer) -> list[str]:
    """A plain token-by-token scan with the Corpus' rules, for an OR of words, prefixes, phrases."""
    node = parse(query)
    leaves = node.children if isinstance(node, Or) else (node,)
    tokens = [
        (w, m.start(), m.end()) for m in re.finditer(r"[^\W_]+", text) for w in words(m.group())
    ]
    stems = [stemmer.stem(w) for w, _, _ in tokens]
    found: set[tuple[int, int]] = set()
    for leaf in leaves:
        if isinstance(leaf, Prefix):
            found |= {(s, e) for w, s, e in tokens if w.startswith(leaf.prefix)}
            continue
        assert isinstance(leaf, Term | Phrase)
        wanted = [
            stemmer.stem(w) for w in (leaf.words if isinstance(leaf, Phrase) else (leaf.word,))
        ]
        for i in range(len(tokens) - len(wanted) + 1):
            if stems[i : i + len(wanted)] == wanted:
                found.add((tokens[i][1], tokens[i + len(wanted) - 1][2]))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return [text[s:e] for s, e in merged]


def test_highlights_agree_with_a_token_by_token_scan_on_the_seeds(seeds: Store) -> None:
    stemmer = Stemmer()
    papers = seeds.papers(limit=120)
    for row in papers:
        vocabulary = words(row.abstract)
        queries = [vocabulary[7], vocabulary[-3][:3] + "*", f'"{vocabulary[10]} {vocabulary[11]}"']
        for query in [" OR ".join(queries), "model OR learning OR ai"]:
            spans = highlights(parse(query), row.abstract, stemmer)
            got = [row.abstract[s:e] for s, e in spans]
            assert got == reference_highlights(query, row.abstract, stemmer), (query, row.id)


# packaging -----------------------------------------------------------------------------------


def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    listed = set(settings["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "digest").rglob("__init__.py")
    }
    missing = found - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert settings["setuptools"]["package-dir"]["digest.templates"] == "templates"
    assert render.template_dir() == ROOT / "templates"


RENDER_FROM_WHEEL = """
import json, sys
from datetime import datetime, UTC
import digest, digest.render as render
from digest.config import Config
from digest.links import links_for
from digest.match import Match
from digest.models import Subscriber
from digest.models import PaperRow
person = Subscriber(1, "ada@example.org", "Ada", "agents", "daily", "html", "active", "cli",
                    "s", 0, "", "")
row = PaperRow(1, "00", "Agents <b>", "Agents " * 40, [], "", 1, 1, "")
config = Config()
content = render.DigestContent(
    person, [Match(row, ["agents"], 1.0)], 0, links_for(person, config.web.base_url),
    render.Health(None, False), datetime(2026, 11, 24, tzinfo=UTC), "<x@b.c>")
data = render.Renderer(config).message(content)
print(json.dumps({"file": digest.__file__, "templates": str(render.template_dir()),
                  "bytes": len(data), "escaped": b"Agents &lt;b&gt;" in data}))
"""


@pytest.mark.slow
def test_an_installed_wheel_renders_without_the_source_tree(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("digest", "templates"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(wheels)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("digest-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(installed)
    assert "digest/templates/digest.html.j2" in names
    assert "digest/templates/_style.css.j2" in names
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    result = subprocess.run(
        [sys.executable, "-S", "-P", "-c", RENDER_FROM_WHEEL],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{installed}:{site_packages}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(installed / "digest" / "__init__.py")
    assert report["templates"] == str(installed / "digest" / "templates")
    assert report["escaped"]
    assert 0 < report["bytes"] < MAX_BYTES
