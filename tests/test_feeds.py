"""Feeds: every feed parses in both formats; ids, dates, links, escaping, the cache, build_all.

The golden files are regenerated with ``pytest tests/test_feeds.py --update-golden``;
review their diff.
"""

import calendar
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import feedparser
import pytest

from digest import backtest, lifecycle, match, subscribers
from digest.config import Config, from_mapping
from digest.errors import ConfigError
from digest.feeds import FORMATS, FeedBody, Feeds, Format, build_all
from digest.ingest import ingest_files
from digest.links import token
from digest.models import STATUSES, Entry, PaperMeta, PaperRow, Subscriber
from digest.paper_links import LISTED_AUTHORS, paper_url
from digest.store import Store, iso
from digest.titles import paper_id

from .conftest import NOW, SEED_FILES, copy_database, make_config

GOLDEN = Path(__file__).parent / "golden"
BASE = "https://digest.example.org"
TAG = "tag:digest.example.org,2026:"
FILTER = "diffusion OR agents"
TOPICS = [
    {"name": "Diffusion & Video", "filter": "diffusion"},
    {"name": "Agents", "filter": "agents OR agent", "slug": "agents"},
]
CLOCK = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
MEDIA = {"atom": "application/atom+xml", "rss": "application/rss+xml"}
KINDS = ["all", "topic", "private"]


def feeds_config(feeds_dir: Path = Path("/nonexistent/feeds"), **feeds: Any) -> Config:
    return make_config(
        web={"base_url": BASE},
        digest={"max_papers": 2},
        feeds={"dir": str(feeds_dir), "max_entries": 5, **feeds},
        topics=TOPICS,
    )


CONFIG = feeds_config()


def subscribe(store: Store, email: str, status: str = "active", query: str = FILTER) -> Subscriber:
    person = lifecycle.add(store, subscribers.Wanted(email, query), "operator", NOW)
    if status != "active":
        with store.write():
            store.update_subscriber(person.id, {"status": status})
    return person


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, seeded_database: Path) -> Iterator[Store]:
    """The seeds and one subscriber of each status, shared by this module: read only."""
    folder = tmp_path_factory.mktemp("feeds")
    with closing(Store(copy_database(seeded_database, folder))) as store:
        for status in STATUSES:
            subscribe(store, f"{status}@example.org", status)
        yield store


@pytest.fixture(scope="module")
def ada(populated: Store) -> Subscriber:
    found = populated.subscriber("active@example.org")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeds ingested over two days, once for the module: copy it, never open it."""
    path = tmp_path_factory.mktemp("two-days") / "digest.db"
    with closing(Store(path)) as store:
        ingest_files(store, SEED_FILES[:3], NOW - timedelta(days=1))
        ingest_files(store, SEED_FILES[3:], NOW)
    return path


@pytest.fixture
def fresh(tmp_path: Path, two_days: Path) -> Iterator[Store]:
    """A store of its own, populated in two days, for tests that change it (a copy)."""
    with closing(Store(copy_database(two_days, tmp_path))) as opened:
        yield opened


def get(feeds: Feeds, kind: str, fmt: Format, secret_token: str = "") -> FeedBody:
    if kind == "all":
        return feeds.public(fmt)
    topic = kind == "topic"
    found = feeds.topic("diffusion-video", fmt) if topic else feeds.private(secret_token, fmt)
    assert found is not None
    return found


def parse(body: FeedBody | bytes) -> Any:
    parsed = feedparser.parse(body.data if isinstance(body, FeedBody) else body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def trending(papers: list[PaperRow]) -> list[PaperRow]:
    ordered = sorted(papers, key=lambda p: p.seq)
    ordered.sort(key=lambda p: p.first_seen, reverse=True)
    return sorted(ordered, key=lambda p: (-p.times_seen, p.best_position))


def newest_first(papers: list[PaperRow]) -> list[PaperRow]:
    ordered = sorted(papers, key=lambda p: (-p.times_seen, p.best_position, p.seq))
    return sorted(ordered, key=lambda p: p.first_seen, reverse=True)


def expected_papers(store: Store, kind: str, query: str = FILTER) -> list[PaperRow]:
    """What each feed holds, before the cap, worked out without the feeds module."""
    if kind == "all":
        return trending(store.papers())
    if kind == "topic":
        return trending([m.paper for m in backtest.backtest(store, "diffusion")])
    return newest_first([m.paper for m in backtest.backtest(store, query)])


def add_papers(store: Store, entries: list[tuple[str, str]], at: datetime) -> None:
    """Store papers directly (the dump parser would refuse some hostile titles)."""
    with store.write():
        dump = store.add_dump("test.txt", hashlib.sha256(repr(entries).encode()).hexdigest(), at)
        batch = [Entry.of(i, title, text, i) for i, (title, text) in enumerate(entries, 1)]
        store.finish_dump(dump, None, store.add_entries(dump, [batch], at))


def add_sourced(store: Store, papers: list[tuple[str, PaperMeta]], at: datetime) -> None:
    """Store papers as a source's response does: each with what the source knows of it."""
    with store.write():
        dump = store.add_dump("hf", hashlib.sha256(repr(papers).encode()).hexdigest(), at, "hf")
        batch = [
            Entry.of(i, title, f"An abstract about agents, number {i}.", i, meta)
            for i, (title, meta) in enumerate(papers, 1)
        ]
        store.finish_dump(dump, "2026-11-24", store.add_entries(dump, [batch], at))


def entry_titles(body: FeedBody, fmt: Format) -> dict[str, str]:
    """Entry id -> title, read with ElementTree (feedparser is slow on long feeds)."""
    root = ElementTree.fromstring(body.data)
    if fmt == "atom":
        entries = root.iterfind("{http://www.w3.org/2005/Atom}entry")
        return {e.findtext("{*}id") or "": e.findtext("{*}title") or "" for e in entries}
    return {
        e.findtext("guid") or "": e.findtext("title") or "" for e in root.iterfind("channel/item")
    }


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# every feed, both formats ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_feed_parses_with_its_entries_ids_utc_dates_and_self_link(
    populated: Store, ada: Subscriber, kind: str, fmt: Format
) -> None:
    secret_token = token(ada, "feed")
    body = get(Feeds(populated, CONFIG), kind, fmt, secret_token)
    parsed = parse(body)
    expected = expected_papers(populated, kind)[:5]
    assert len(expected) == 5
    assert body.entries == len(parsed.entries) == 5
    assert [e.id for e in parsed.entries] == [f"{TAG}paper/{p.id}" for p in expected]
    for entry in parsed.entries:
        assert entry.published.endswith("+00:00" if fmt == "atom" else "+0000")
        assert calendar.timegm(entry.published_parsed) == NOW.timestamp()
    path = {"all": "all", "topic": "topics/diffusion-video", "private": secret_token}[kind]
    selves = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert selves == [f"{BASE}/feeds/{path}.{fmt}"]


FEED_META = [
    ("all", "Trending papers", "feed/all", "Trending research papers, most listed first"),
    ("topic", "Trending papers: Diffusion & Video", "feed/topic/diffusion-video", "Trending research papers matching diffusion"),
    ("private", f"Your papers: {FILTER}", "feed/subscriber/{id}", f"Research papers matching {FILTER}"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("kind", "title", "feed_id", "description"), FEED_META)
def test_every_feed_has_title_id_description_language_generator_and_home_link(
    populated: Store,
    ada: Subscriber,
    fmt: Format,
    kind: str,
    title: str,
    feed_id: str,
    description: str,
) -> None:
    feed = parse(get(Feeds(populated, CONFIG), kind, fmt, token(ada, "feed"))).feed
    assert feed.title == title
    assert feed.subtitle == description
    assert feed.language == "en"
    assert feed.generator == "digest"
    assert feed.link == f"{BASE}/"
    if fmt == "atom":
        assert feed.id == TAG + feed_id.format(id=ada.id)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_entry_links_to_the_paper_and_to_its_code_with_the_abstract_as_content(
    populated: Store, fmt: Format
) -> None:
    config = feeds_config(max_entries=10).model_copy(
        update={"topics": from_mapping({"topics": [{"name": "Code", "filter": "github"}]}).topics}
    )
    body = Feeds(populated, config).topic("code", fmt)
    assert body is not None
    parsed = parse(body)
    papers = {f"{TAG}paper/{p.id}": p for p in populated.papers()}
    assert len(parsed.entries) == 10
    for entry in parsed.entries:
        paper = papers[entry.id]
        assert entry.link == paper_url(config.digest.paper_url, paper.title)
        code = [u for u in paper.links if "github.com/" in u]
        html = entry.content[0].value if fmt == "atom" else entry.description
        assert paper.abstract[:60] in html
        for url in code:
            assert f'<a href="{url}">' in html
            if fmt == "atom":
                related = [link.href for link in entry.links if link.rel == "related"]
                assert url in related


@pytest.mark.parametrize("max_entries", [1, 5, 1000])
@pytest.mark.parametrize("kind", KINDS)
def test_a_feed_holds_at_most_max_entries(
    populated: Store, ada: Subscriber, kind: str, max_entries: int
) -> None:
    body = get(
        Feeds(populated, feeds_config(max_entries=max_entries)), kind, "atom", token(ada, "feed")
    )
    assert body.entries == min(max_entries, len(expected_papers(populated, kind)))


# ids are stable ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_rebuild_gives_the_same_bytes_and_ids(
    populated: Store, ada: Subscriber, kind: str, fmt: Format
) -> None:
    feeds = Feeds(populated, CONFIG)
    first = get(feeds, kind, fmt, token(ada, "feed"))
    feeds.invalidate()
    again = get(feeds, kind, fmt, token(ada, "feed"))
    other = get(Feeds(populated, CONFIG), kind, fmt, token(ada, "feed"))
    assert again is not first
    assert first.data == again.data == other.data
    assert first.etag == again.etag == other.etag


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_entries_that_remain_after_an_ingest_keep_their_ids(
    store: Store, kind: str, fmt: Format
) -> None:
    person = subscribe(store, "ada@example.org")
    feeds = Feeds(store, feeds_config(max_entries=1000))
    ingest_files(store, SEED_FILES[:3], NOW - timedelta(days=1))
    before = entry_titles(get(feeds, kind, fmt, token(person, "feed")), fmt)
    ingest_files(store, SEED_FILES[3:], NOW)
    after = entry_titles(get(feeds, kind, fmt, token(person, "feed")), fmt)
    assert set(before) < set(after)
    for entry_id, title in after.items():
        assert entry_id == f"{TAG}paper/{paper_id(title)}"
        assert before.get(entry_id, title) == title


# escaping -------------------------------------------------------------------------------

HOSTILE = [
    ("<script>alert(1)</script> Agents that escape", "<script>alert(1)</script> Agents that escape"),
    ('Q&A: x<y, y>z, "quoted" \'apos\' ]]> agents', 'Q&A: x<y, y>z, "quoted" \'apos\' ]]> agents'),
    ("Control\x00characters\x0bin\x1fa title about agents", "Control characters in a title about agents"),
]  # fmt: skip
HOSTILE_ABSTRACT = (
    "An abstract about agents with <script>alert(2)</script> & <img src=x onerror=alert(3)>, \x0c and more text. "
    * 3
)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("title", "shown"), HOSTILE)
def test_a_hostile_title_and_abstract_are_text_in_the_xml(
    store: Store, fmt: Format, title: str, shown: str
) -> None:
    add_papers(store, [(title, HOSTILE_ABSTRACT)], NOW)
    body = Feeds(store, CONFIG).public(fmt)
    parsed = parse(body)
    assert [e.title for e in parsed.entries] == [shown]
    item = "{http://www.w3.org/2005/Atom}entry" if fmt == "atom" else "channel/item"
    titles = [e.findtext("{*}title") for e in ElementTree.fromstring(body.data).iterfind(item)]
    assert titles == [shown]  # text in the XML, whatever a reader's heuristics
    assert b"<script" not in body.data
    assert b"<img" not in body.data
    if "<script>" in title:
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body.data
    content = parsed.entries[0].content[0].value if fmt == "atom" else parsed.entries[0].description
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in content  # escaped text inside the HTML


# what sources know: authors, categories, arXiv links ------------------------------------

SOURCED = PaperMeta(
    arxiv_id="2411.01234",
    authors=("Ada Lovelace", "Charles Babbage", "Émilie du Châtelet"),
    categories=("cs.CL", "cs.AI"),
    published="2026-11-20",
    upvotes=42,
    comments=3,
    github="https://github.com/example/agents",
)


def entries_by_title(parsed: Any) -> dict[str, Any]:
    return {entry.title: entry for entry in parsed.entries}


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_entry_from_a_source_carries_authors_categories_and_arxiv_links(
    store: Store, fmt: Format
) -> None:
    add_sourced(store, [("Agents from a source", SOURCED)], NOW)
    add_papers(store, [("Agents from a text dump", "An abstract about agents.")], NOW)
    body = Feeds(store, CONFIG).public(fmt)
    entries = entries_by_title(parse(body))
    sourced, dumped = entries["Agents from a source"], entries["Agents from a text dump"]
    assert sourced.link == "https://arxiv.org/abs/2411.01234"
    assert [a["name"] for a in sourced.authors] == list(SOURCED.authors)
    assert [tag.term for tag in sourced.tags] == ["cs.CL", "cs.AI"]
    html = sourced.content[0].value if fmt == "atom" else sourced.description
    for url, label in [
        ("https://arxiv.org/pdf/2411.01234", "PDF"),
        ("https://huggingface.co/papers/2411.01234", "Daily Papers"),
        ("https://github.com/example/agents", "Code (github.com/example/agents)"),
    ]:
        assert f'<a href="{url}">{label}</a>' in html
        if fmt == "atom":
            assert (url, label) in [(k.href, k.title) for k in sourced.links if k.rel == "related"]
    assert dumped.link == paper_url(CONFIG.digest.paper_url, "Agents from a text dump")
    assert "tags" not in dumped
    assert "arxiv.org/pdf" not in (dumped.content[0].value if fmt == "atom" else dumped.description)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rss_names_authors_in_dc_creator_and_atom_in_author(store: Store, fmt: Format) -> None:
    """RSS 2.0's <author> must be an email address; sources give names only."""
    add_sourced(store, [("Agents from a source", SOURCED)], NOW)
    add_papers(store, [("Agents from a text dump", "An abstract about agents.")], NOW)
    root = ElementTree.fromstring(Feeds(store, CONFIG).public(fmt).data)
    dc = "{http://purl.org/dc/elements/1.1/}creator"
    if fmt == "atom":
        atom = "{http://www.w3.org/2005/Atom}"
        found = {
            e.findtext(f"{atom}title"): [a.findtext(f"{atom}name") for a in e.iter(f"{atom}author")]
            for e in root.iter(f"{atom}entry")
        }
        assert not list(root.iter(dc))
    else:
        found = {e.findtext("title"): [c.text for c in e.iter(dc)] for e in root.iter("item")}
        assert not list(root.iter("author"))
    assert found == {"Agents from a source": list(SOURCED.authors), "Agents from a text dump": []}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_feed_without_authors_declares_no_dublin_core(populated: Store, fmt: Format) -> None:
    assert b"purl.org/dc" not in Feeds(populated, CONFIG).public(fmt).data


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_entry_names_at_most_the_listed_authors(store: Store, fmt: Format) -> None:
    authors = tuple(f"Author {i}" for i in range(LISTED_AUTHORS + 500))
    add_sourced(store, [("A collaboration on agents", PaperMeta(authors=authors))], NOW)
    [entry] = parse(Feeds(store, CONFIG).public(fmt)).entries
    assert [a["name"] for a in entry.authors] == list(authors[:LISTED_AUTHORS])
    assert entry.link == paper_url(CONFIG.digest.paper_url, "A collaboration on agents")


HOSTILE_META = PaperMeta(
    arxiv_id='2411.01234"><script>',
    authors=(
        "<script>alert(1)</script>",
        'A "quoted" & <b>bold</b> ]]> name',
        "Eve\u202eevil",
        "Line\r\nbreak\x00\x0b",
        "\u2066\u2069 \n",  # nothing left: no author
    ),
    categories=('cs.CL"/><category term="injected', "<b>x</b>", "\x1f"),
    github="javascript:alert(1)",
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_names_and_categories_are_text_in_the_xml(store: Store, fmt: Format) -> None:
    add_sourced(store, [("Agents under attack", HOSTILE_META)], NOW)
    body = Feeds(store, CONFIG).public(fmt)
    [entry] = parse(body).entries
    assert [a["name"] for a in entry.authors] == [
        "<script>alert(1)</script>",
        'A "quoted" & <b>bold</b> ]]> name',
        "Eve evil",
        "Line break",
    ]
    assert [tag.term for tag in entry.tags] == ['cs.CL"/><category term="injected', "<b>x</b>"]
    assert entry.link == "https://arxiv.org/abs/2411.01234%22%3E%3Cscript%3E"
    assert b"<script" not in body.data
    assert b"<b>" not in body.data
    assert "\u202e".encode() not in body.data
    assert b"javascript:" not in body.data
    ElementTree.fromstring(body.data)  # well-formed


# private feeds --------------------------------------------------------------------------


def test_a_private_feed_holds_the_matches_beyond_the_email_cap_newest_first(fresh: Store) -> None:
    person = subscribe(fresh, "ada@example.org")
    config = feeds_config(max_entries=1000)
    body = Feeds(fresh, config).private(token(person, "feed"), "atom")
    assert body is not None
    upcoming = match.pending(fresh, person, config.digest, NOW)
    assert len(upcoming.capped) == config.digest.max_papers == 2
    assert body.entries == len(backtest.backtest(fresh, FILTER)) > len(upcoming.capped) == 2
    assert upcoming.more > 0
    dates = [e.published for e in parse(body).entries]
    assert dates == sorted(dates, reverse=True)
    assert dates[-1] == iso(NOW - timedelta(days=1)).replace("Z", "+00:00")


TOKENS = [
    ("empty", lambda p: ""),
    ("not a token", lambda p: "feeds"),
    ("unknown id", lambda p: "999999-" + "0" * 32),
    ("forged mac", lambda p: f"{p.id}-" + "0" * 32),
    ("manage token", lambda p: token(p, "manage")),
    ("unsubscribe token", lambda p: token(p, "unsubscribe")),
    ("upper case", lambda p: token(p, "feed").upper()),
    ("with suffix", lambda p: token(p, "feed") + ".atom"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("case", "make"), TOKENS)
def test_a_private_feed_is_none_without_the_right_token(
    populated: Store, ada: Subscriber, fmt: Format, case: str, make: Any
) -> None:
    assert Feeds(populated, CONFIG).private(make(ada), fmt) is None


@pytest.mark.parametrize("status", STATUSES)
def test_a_private_feed_lasts_as_long_as_the_subscription(populated: Store, status: str) -> None:
    person = populated.subscriber(f"{status}@example.org")
    assert person is not None
    served = Feeds(populated, CONFIG).private(token(person, "feed"), "rss")
    assert (served is not None) == (status != "unsubscribed")


def test_purging_or_a_new_secret_revokes_a_private_feed(fresh: Store) -> None:
    ada, bob = subscribe(fresh, "ada@example.org"), subscribe(fresh, "bob@example.org")
    feeds = Feeds(fresh, CONFIG)
    assert feeds.private(token(ada, "feed"), "atom") is not None
    assert feeds.private(token(bob, "feed"), "atom") is not None
    lifecycle.remove(fresh, "ada@example.org", NOW, purge=True)
    with fresh.write():
        fresh.update_subscriber(bob.id, {"secret": "a-new-secret"})
    assert feeds.private(token(ada, "feed"), "atom") is None
    assert feeds.private(token(bob, "feed"), "atom") is None


def test_an_unknown_topic_is_none(populated: Store) -> None:
    assert Feeds(populated, CONFIG).topic("no-such-topic", "atom") is None


BAD_TOPICS = [
    ([{"name": "Video", "filter": "video"}, {"name": "video", "filter": "clips"}], "share the feed slug 'video'"),
    ([{"name": "Broken", "filter": "(diffusion"}], "[[topics]] #1 filter: bad filter at column 1"),
]  # fmt: skip


@pytest.mark.parametrize(("topics", "message"), BAD_TOPICS)
def test_a_bad_topic_is_a_config_error(store: Store, topics: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Feeds(store, from_mapping({"topics": topics}))


# the cache ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_cache_returns_the_same_body_until_invalidated(
    populated: Store, ada: Subscriber, kind: str
) -> None:
    feeds = Feeds(populated, CONFIG)
    first = get(feeds, kind, "atom", token(ada, "feed"))
    assert get(feeds, kind, "atom", token(ada, "feed")) is first
    feeds.invalidate()
    assert get(feeds, kind, "atom", token(ada, "feed")) is not first


@pytest.mark.parametrize("kind", KINDS)
def test_an_ingest_by_another_process_is_seen_without_invalidate(
    store: Store, tmp_path: Path, kind: str
) -> None:
    person = subscribe(store, "ada@example.org")
    ingest_files(store, SEED_FILES[:1], NOW - timedelta(days=1))
    feeds = Feeds(store, CONFIG)
    before = get(feeds, kind, "atom", token(person, "feed"))
    other = Store(tmp_path / "digest.db")  # its own connection, as the scheduler's would be
    try:
        ingest_files(other, SEED_FILES[1:], NOW)
    finally:
        other.close()
    after = get(feeds, kind, "atom", token(person, "feed"))
    assert after.etag != before.etag
    assert after.data != before.data


def test_a_changed_filter_rebuilds_the_private_feed(fresh: Store) -> None:
    person = subscribe(fresh, "ada@example.org")
    feeds = Feeds(fresh, CONFIG)
    before = feeds.private(token(person, "feed"), "atom")
    lifecycle.set_by_operator(fresh, person.email, {"filter": "video"}, NOW)
    after = feeds.private(token(person, "feed"), "atom")
    assert before is not None
    assert after is not None
    assert parse(after).feed.title == "Your papers: video"


@pytest.mark.parametrize("fmt", FORMATS)
def test_etags_are_strong_hashes_that_change_only_with_the_content(
    fresh: Store, fmt: Format
) -> None:
    config = feeds_config(max_entries=1000)
    feeds = Feeds(fresh, config)
    body = feeds.public(fmt)
    assert re.fullmatch(r'"[0-9a-f]{32}"', body.etag)
    assert body.etag != feeds.public("rss" if fmt == "atom" else "atom").etag
    feeds.invalidate()
    assert feeds.public(fmt).etag == Feeds(fresh, config).public(fmt).etag == body.etag
    add_papers(fresh, [("A new paper about agents", HOSTILE_ABSTRACT)], NOW + timedelta(hours=1))
    changed = feeds.public(fmt)
    assert changed.etag != body.etag
    assert changed.last_modified == NOW + timedelta(hours=1)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_last_modified_is_the_newest_entry_in_whole_utc_seconds(
    fresh: Store, kind: str, fmt: Format
) -> None:
    person = subscribe(fresh, "ada@example.org")
    body = get(Feeds(fresh, CONFIG), kind, fmt, token(person, "feed"))
    assert body.media_type == f"{MEDIA[fmt]}; charset=utf-8"
    newest = max(p.first_seen for p in expected_papers(fresh, kind)[:5])
    assert iso(body.last_modified) == newest
    assert body.last_modified.utcoffset() == timedelta(0)
    assert body.last_modified.microsecond == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_feed_is_valid_and_dated_by_the_clock(store: Store, fmt: Format) -> None:
    body = Feeds(store, CONFIG, clock=lambda: CLOCK).public(fmt)
    assert body.entries == 0
    assert parse(body).entries == []
    assert body.last_modified == CLOCK.replace(microsecond=0)


# build_all ------------------------------------------------------------------------------

PUBLIC_FILES = {"all.atom", "all.rss", "topics/diffusion-video.atom", "topics/diffusion-video.rss", "topics/agents.atom", "topics/agents.rss"}  # fmt: skip


@pytest.mark.parametrize("private_static", [False, True])
def test_build_all_writes_every_feed_file_and_nothing_else(
    populated: Store, tmp_path: Path, private_static: bool
) -> None:
    config = feeds_config(tmp_path / "feeds", private_static=private_static)
    written = build_all(populated, config, now=CLOCK)
    root = config.feeds.dir
    private = {
        f"private/{token(p, 'feed')}.{fmt}"
        for p in populated.subscribers(["active", "paused"])
        for fmt in FORMATS
    }
    expected = PUBLIC_FILES | (private if private_static else set())
    assert len(private) == 4
    assert files_under(root) == expected  # no temporary file left behind
    names = [str(path.relative_to(root)) for path, _ in written]
    assert sorted(names) == sorted(expected)
    assert names[:2] == ["all.atom", "all.rss"]
    assert json.loads(json.dumps([{"path": str(p), "entries": n} for p, n in written]))
    for path, entries in written:
        assert entries == len(parse(path.read_bytes()).entries) in (4, 5)  # 4 about agents
        is_private = path.parent.name == "private"
        assert path.stat().st_mode & 0o777 == (0o600 if is_private else 0o644)
    feeds = Feeds(populated, config)
    for fmt in FORMATS:  # the same bytes as the web front serves
        assert (root / f"all.{fmt}").read_bytes() == feeds.public(fmt).data


def test_build_all_renames_a_temporary_file_in_the_same_folder(
    populated: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path]] = []
    real = os.replace

    def spy(source: Any, target: Any) -> None:
        renames.append((Path(source), Path(target)))
        real(source, target)

    monkeypatch.setattr(os, "replace", spy)
    written = build_all(populated, feeds_config(tmp_path / "feeds"))
    assert [target for _, target in renames] == [path for path, _ in written]
    for source, target in renames:
        assert source.parent == target.parent
        assert source.name.startswith(f".{target.name}.")
        assert source.suffix == ".tmp"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    populated: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = feeds_config(tmp_path / "feeds")
    build_all(populated, config)
    before = {name: (config.feeds.dir / name).read_bytes() for name in PUBLIC_FILES}

    def broken(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        build_all(populated, feeds_config(tmp_path / "feeds", max_entries=1))
    assert files_under(config.feeds.dir) == PUBLIC_FILES
    assert {name: (config.feeds.dir / name).read_bytes() for name in PUBLIC_FILES} == before


def test_build_all_removes_only_its_own_stale_files(populated: Store, tmp_path: Path) -> None:
    root = tmp_path / "feeds"
    build_all(populated, feeds_config(root, private_static=True))
    for foreign in ("topics/notes.txt", "private/README", "index.html", "old.atom"):
        (root / foreign).write_text("keep me", encoding="utf-8")
    fewer = feeds_config(root).model_copy(update={"topics": feeds_config(root).topics[:1]})
    build_all(populated, fewer)
    assert files_under(root) == {
        "all.atom", "all.rss", "topics/diffusion-video.atom", "topics/diffusion-video.rss",
        "topics/notes.txt", "private/README", "index.html", "old.atom",
    }  # fmt: skip


# golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_seed_feed_matches_its_golden_file(
    populated: Store, fmt: Format, request: pytest.FixtureRequest
) -> None:
    data = Feeds(populated, CONFIG, clock=lambda: CLOCK).public(fmt).data
    golden = GOLDEN / f"feed.{fmt}"
    if request.config.getoption("--update-golden"):
        golden.write_bytes(data)
    assert golden.exists(), f"{golden} is missing: run pytest --update-golden and review it"
    assert data == golden.read_bytes(), (
        f"{golden.name} differs from the feed: if the change is intended, run "
        "`.venv/bin/pytest tests/test_feeds.py --update-golden` and review the diff"
    )
