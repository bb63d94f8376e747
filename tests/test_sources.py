"""Listing sources: the HTTP client against a real local server, the back-off, the parsers.

The fixtures under ``fixtures/sources/`` are invented papers in the real shapes
(see the README there): the Daily Papers JSON as huggingface_hub's
``PaperInfo`` reads it, the arXiv RSS and Atom feeds as arXiv's own
specifications describe them.  Nothing here reaches past 127.0.0.1.
"""

import gzip
import json
import socket
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.dumps import ABSTRACT_MAX, ABSTRACT_MIN, TITLE_MAX, entry_problem
from digest.errors import SourceFailed
from digest.models import PaperMeta
from digest.sources import KINDS, Parsed, parse
from digest.sources.arxiv import parse_arxiv
from digest.sources.backoff import DAY, backoff, next_attempt
from digest.sources.daily_papers import parse_daily_papers
from digest.sources.http import SourceClient, Validators, retry_after, shown, user_agent
from digest.sources.listing import careful_person, person

from .conftest import examples
from .http_servers import Respond, Site, chunked_forever, reply, serve

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
ABSTRACT = "An abstract long enough for the dump rules, " * 5
UA = "digest/0.1.0 (+https://operator.example/contact)"


def client(**options: Any) -> SourceClient:
    return SourceClient(UA, **options)


def failure(url: str, **options: Any) -> SourceFailed:
    with client(**options) as source, pytest.raises(SourceFailed) as caught:
        source.get(url)
    return caught.value


# --- the client ---------------------------------------------------------------------------


def test_a_get_names_itself_and_returns_body_type_url_and_validators() -> None:
    def respond(handler: BaseHTTPRequestHandler, site: Site) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "ETag": '"v1"',
            "Last-Modified": "Tue, 09 Sep 2025 04:00:00 GMT",
        }
        reply(handler, 200, b"[]", headers)

    with serve(respond) as site, client() as source:
        fetched = source.get(f"{site.url}/api/daily_papers")
    assert fetched is not None
    assert fetched.body == b"[]"
    assert fetched.content_type == "application/json; charset=utf-8"
    assert fetched.url == f"{site.url}/api/daily_papers"
    assert fetched.validators == Validators('"v1"', "Tue, 09 Sep 2025 04:00:00 GMT")
    assert site.requests[0][1]["User-Agent"] == UA


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        ("https://operator.example/contact", "digest/0.1.0 (+https://operator.example/contact)"),
        (None, "digest/0.1.0"),
    ],
)
def test_the_user_agent_carries_the_version_and_the_contact(
    contact: str | None, expected: str
) -> None:
    assert user_agent(contact) == expected


def test_a_conditional_get_sends_the_validators_and_304_means_unchanged() -> None:
    def respond(handler: BaseHTTPRequestHandler, site: Site) -> None:
        if handler.headers.get("If-None-Match") == '"v1"':
            handler.send_response(304)
            handler.send_header("ETag", '"v1"')
            handler.end_headers()
        else:
            reply(handler, 200, b"[]", {"ETag": '"v1"'})

    with serve(respond) as site, client() as source:
        first = source.get(site.url)
        assert first is not None
        again = source.get(site.url, Validators('"v1"', "Tue, 09 Sep 2025 04:00:00 GMT"))
    assert again is None
    sent = site.requests[1][1]
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Tue, 09 Sep 2025 04:00:00 GMT"
    assert "If-None-Match" not in site.requests[0][1]


def redirecting(chain: dict[str, str]) -> Respond:
    """Each path in ``chain`` redirects to the next; any other path answers ``ok``."""

    def respond(handler: BaseHTTPRequestHandler, site: Site) -> None:
        if handler.path in chain:
            reply(handler, 302, headers={"Location": chain[handler.path]})
        else:
            reply(handler, 200, b"ok")

    return respond


def test_redirects_are_followed_up_to_the_limit() -> None:
    chain = {"/a": "/b", "/b": "/c", "/c": "/end"}
    with serve(redirecting(chain)) as site, client(max_redirects=3) as source:
        fetched = source.get(f"{site.url}/a")
    assert fetched is not None
    assert (fetched.body, fetched.url) == (b"ok", f"{site.url}/end")


def test_one_redirect_past_the_limit_is_refused() -> None:
    chain = {"/a": "/b", "/b": "/c", "/c": "/end"}
    with serve(redirecting(chain)) as site:
        error = failure(f"{site.url}/a", max_redirects=2)
    assert error.reason == f"more than 2 redirects, from {site.url}/a"
    assert [path for path, _ in site.requests] == ["/a", "/b", "/c"]


def test_a_redirect_loop_is_refused_as_one() -> None:
    with serve(redirecting({"/a": "/b", "/b": "/a"})) as site:
        error = failure(f"{site.url}/a")
    assert error.reason == f"redirect loop: {site.url}/b leads back to {site.url}/a"


def test_a_redirect_off_http_is_refused() -> None:
    with serve(redirecting({"/a": "ftp://example.org/listing"})) as site:
        error = failure(f"{site.url}/a")
    assert error.reason == "not an http(s) URL: ftp://example.org/listing"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/listing", "gopher://x", "http://", "/relative"]
)
def test_only_http_and_https_urls_are_fetched(url: str) -> None:
    assert failure(url).reason == f"not an http(s) URL: {url}"


def test_a_declared_length_over_the_cap_is_refused_before_the_body() -> None:
    with serve(lambda handler, site: reply(handler, 200, b"x" * 2_000)) as site:
        error = failure(site.url, max_bytes=1_000)
    assert error.reason == "response over 1,000 bytes (Content-Length 2000)"


def test_a_chunked_body_is_cut_off_at_the_cap_while_streaming() -> None:
    with serve(lambda handler, site: chunked_forever(handler, site, b"x" * 4096, 0)) as site:
        error = failure(site.url, max_bytes=100_000)
    assert error.reason == "response over 100,000 bytes"


def test_the_cap_is_on_the_decompressed_body() -> None:
    packed = gzip.compress(b"x" * 300_000)

    def respond(handler: BaseHTTPRequestHandler, site: Site) -> None:
        reply(handler, 200, packed, {"Content-Encoding": "gzip"})

    with serve(respond) as site:
        with client(max_bytes=400_000) as source:
            fetched = source.get(site.url)
        assert fetched is not None
        assert fetched.body == b"x" * 300_000
        assert failure(site.url, max_bytes=200_000).reason == "response over 200,000 bytes"


def test_a_slow_drip_body_meets_the_total_deadline() -> None:
    with serve(lambda handler, site: chunked_forever(handler, site, b"x", 0.02)) as site:
        started = time.monotonic()
        error = failure(site.url, total_timeout=0.5)
        took = time.monotonic() - started
    assert error.reason == "timed out after 0.5 s"
    assert 0.5 <= took < 2


def test_a_body_that_stalls_is_cut_off_at_the_deadline() -> None:
    def respond(handler: BaseHTTPRequestHandler, site: Site) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"x")
        handler.wfile.flush()
        site.stop.wait()

    with serve(respond) as site:
        started = time.monotonic()
        error = failure(site.url, total_timeout=0.5)
        took = time.monotonic() - started
    assert error.reason == "timed out after 0.5 s"
    assert took < 2


def test_headers_that_never_come_meet_the_deadline() -> None:
    with serve(lambda handler, site: site.stop.wait()) as site:
        started = time.monotonic()
        error = failure(site.url, total_timeout=0.5)
    assert error.reason == "timed out after 0.5 s"
    assert time.monotonic() - started < 2


def test_a_refused_connection_is_said_so() -> None:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(f"http://127.0.0.1:{port}/feed")
    assert error.reason == f"connection refused by http://127.0.0.1:{port}"
    assert error.retry_after is None


def rejecting(status: int, headers: dict[str, str]) -> Respond:
    return lambda handler, site: reply(handler, status, b"busy", headers)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "120"}, 120.0),
        (503, {"Retry-After": "30"}, 30.0),
        (503, {}, None),
        (429, {"Retry-After": "soon"}, None),
        (429, {"Retry-After": "9999999999"}, 86_400.0),
        (500, {"Retry-After": "120"}, None),
        (500, {}, None),
        (404, {}, None),
    ],
)
def test_an_http_error_names_the_status_and_any_retry_after(
    status: int, headers: dict[str, str], expected: float | None
) -> None:
    with serve(rejecting(status, headers)) as site:
        error = failure(f"{site.url}/api/daily_papers")
    assert error.reason == f"HTTP {status} from {site.url}/api/daily_papers"
    assert error.retry_after == expected


def test_a_retry_after_date_is_read_by_the_servers_clock() -> None:
    server_now = datetime(2025, 9, 9, 12, 0, tzinfo=UTC)
    headers = {
        "Date": format_datetime(server_now, usegmt=True),
        "Retry-After": format_datetime(server_now + timedelta(seconds=90), usegmt=True),
    }
    with serve(lambda handler, site: reply(handler, 429, b"", headers)) as site:
        error = failure(site.url)
    assert error.retry_after == 90.0


NOW = datetime(2025, 9, 9, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("99999999999999999999", 86_400.0),
        ("Tue, 09 Sep 2025 12:01:30 GMT", 90.0),
        ("Tue, 09 Sep 2025 11:00:00 GMT", 0.0),
        ("Fri, 09 Sep 2033 12:00:00 GMT", 86_400.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_takes_seconds_or_a_date_capped_at_a_day(
    value: str | None, expected: float | None
) -> None:
    assert retry_after(value, NOW) == expected


def test_any_transport_can_stand_in_for_the_network() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, content=b"<rss/>", headers={"Content-Type": "application/rss+xml"}
        )

    with client(transport=httpx.MockTransport(handle)) as source:
        fetched = source.get("https://rss.arxiv.org/rss/cs.LG")
    assert fetched is not None
    assert fetched.body == b"<rss/>"
    assert seen[0].headers["User-Agent"] == UA


# --- back-off -----------------------------------------------------------------------------

LAST = datetime(2025, 9, 9, 6, 0, tzinfo=UTC)
intervals = st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=7))
failure_counts = st.integers(min_value=0, max_value=10_000)
waits = (
    st.none()
    | st.floats(min_value=-1e6, max_value=1e12)
    | st.sampled_from([float("nan"), float("inf")])
)


@given(intervals, failure_counts, waits)
def test_the_next_attempt_is_never_sooner_than_the_interval(
    every: timedelta, failures: int, wait: float | None
) -> None:
    assert next_attempt(LAST, every, failures, wait) >= LAST + every


@given(intervals, failure_counts)
def test_backing_off_grows_with_failures_and_stops_at_its_cap(
    every: timedelta, failures: int
) -> None:
    cap = max(every, min(8 * every, DAY))
    assert backoff(every, failures) <= backoff(every, failures + 1) <= cap
    assert backoff(every, 10_000) == cap


@given(intervals, st.integers(min_value=1, max_value=4))
def test_each_failure_in_a_row_doubles_the_wait_until_the_cap(
    every: timedelta, failures: int
) -> None:
    cap = max(every, min(8 * every, DAY))
    assert backoff(every, failures) == min(every * 2 ** (failures - 1), cap)


@given(intervals, failure_counts, st.floats(min_value=0, max_value=1e9))
def test_a_longer_retry_after_wins_up_to_a_day(
    every: timedelta, failures: int, wait: float
) -> None:
    at = next_attempt(LAST, every, failures, wait)
    assert at >= LAST + min(timedelta(seconds=wait), DAY)
    assert at == LAST + max(backoff(every, failures), min(timedelta(seconds=wait), DAY))


def test_no_failure_means_the_plain_interval() -> None:
    assert next_attempt(LAST, timedelta(hours=1), 0, None) == LAST + timedelta(hours=1)
    assert next_attempt(LAST, timedelta(hours=1), 1, None) == LAST + timedelta(hours=1)
    assert next_attempt(LAST, timedelta(hours=1), 3, None) == LAST + timedelta(hours=4)
    assert next_attempt(LAST, timedelta(hours=1), 9, None) == LAST + timedelta(hours=8)
    assert next_attempt(LAST, timedelta(hours=6), 9, None) == LAST + DAY


# --- the entry rules, one owner -------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "abstract", "problem"),
    [
        ("A Title", ABSTRACT, None),
        ("", ABSTRACT, "title missing"),
        ("A Title", "", "abstract missing"),
        ("T" * (TITLE_MAX + 1), ABSTRACT, f"title of {TITLE_MAX + 1} characters, over {TITLE_MAX}"),
        (
            "A Title",
            "a" * (ABSTRACT_MIN - 1),
            f"abstract of {ABSTRACT_MIN - 1} characters, under {ABSTRACT_MIN}",
        ),
        (
            "A Title",
            "a" * (ABSTRACT_MAX + 1),
            f"abstract of {ABSTRACT_MAX + 1:,} characters, over {ABSTRACT_MAX:,}",
        ),
        ("A\x00Title", ABSTRACT, "title has a control character (U+0000)"),
        ("A Title", ABSTRACT + "\x1b", "abstract has a control character (U+001B)"),
        ("A \ud800 Title", ABSTRACT, "title has a lone surrogate (U+D800)"),
    ],
)
def test_entry_problem_is_the_dump_rules_for_fields(
    title: str, abstract: str, problem: str | None
) -> None:
    assert entry_problem(title, abstract) == problem


# --- Daily Papers ---------------------------------------------------------------------------


def daily_fixture() -> Parsed:
    return parse_daily_papers((FIXTURES / "daily_papers.json").read_bytes(), "daily-papers")


def test_daily_papers_maps_every_field() -> None:
    first = daily_fixture().entries[0]
    assert first.title == "Sparse Mixture Routing for Long-Context Retrieval"
    assert first.abstract.startswith(
        "We study how a sparse mixture of routing experts can retrieve evidence"
    )
    assert "\n" not in first.abstract
    assert (first.position, first.line) == (1, 1)
    assert first.links == ("https://github.com/example/sparse-routing",)
    assert first.meta == PaperMeta(
        arxiv_id="2509.04664",
        authors=("Zoë Ångström", "Łukasz Wiśniewski", "李明"),
        published="2025-09-04",
        upvotes=26,
        comments=3,
        github="https://github.com/example/sparse-routing",
        listed="2025-09-08",  # submittedOnDailyAt: the day Daily Papers listed it
    )


def test_daily_papers_keeps_hostile_text_verbatim() -> None:
    second = daily_fixture().entries[1]
    assert second.title == '<script>alert(1)</script> & "quotes"'
    assert '<b>bold</b> & ampersands & "quotes"' in second.abstract
    assert second.meta is not None
    assert second.meta.arxiv_id == "2509.05123"
    assert second.meta.authors == ("Ada Quinn", "Ben O'Reilly")


def test_daily_papers_absent_and_garbage_fields_are_dropped_not_the_paper() -> None:
    parsed = daily_fixture()
    quiet, garbage = parsed.entries[2], parsed.entries[3]
    assert quiet.meta == PaperMeta(arxiv_id="2509.06001")
    assert garbage.title == "Garbage in Every Optional Field"
    assert garbage.meta == PaperMeta()


def test_daily_papers_skips_bad_items_and_repeats_with_a_reason_each() -> None:
    parsed = daily_fixture()
    assert [(e.position, e.line) for e in parsed.entries] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert parsed.skipped == [
        "item 5: abstract of 81 characters, under 150",
        "item 6: the same paper as item 1",
    ]
    assert parsed.replaced == 0


def paper(**fields: object) -> dict[str, object]:
    return {"paper": {"id": "2401.12345", "title": "A Title", "summary": ABSTRACT, **fields}}


@pytest.mark.parametrize(
    ("fields", "meta"),
    [
        ({"upvotes": True}, PaperMeta(arxiv_id="2401.12345")),
        ({"upvotes": -1}, PaperMeta(arxiv_id="2401.12345")),
        ({"upvotes": 10**12}, PaperMeta(arxiv_id="2401.12345")),
        ({"upvotes": 1.5}, PaperMeta(arxiv_id="2401.12345")),
        ({"upvotes": 0}, PaperMeta(arxiv_id="2401.12345", upvotes=0)),
        ({"authors": "Ada Quinn"}, PaperMeta(arxiv_id="2401.12345")),
        (
            {
                "authors": [
                    {"name": "Ada"},
                    "Ben",
                    {"name": 3},
                    {"name": " "},
                    None,
                    {"name": "Cy\x00"},
                    {"name": "  Dee  Dee "},
                ]
            },
            PaperMeta(arxiv_id="2401.12345", authors=("Ada", "Dee Dee")),
        ),
        ({"authors": [{"name": "x" * 301}]}, PaperMeta(arxiv_id="2401.12345")),
        ({"githubRepo": "javascript:alert(1)"}, PaperMeta(arxiv_id="2401.12345")),
        ({"githubRepo": "https://github.com/a b"}, PaperMeta(arxiv_id="2401.12345")),
        (
            {"githubRepo": "http://github.com/a/b"},
            PaperMeta(arxiv_id="2401.12345", github="http://github.com/a/b"),
        ),
        (
            {"publishedAt": "2024-01-15T23:30:00-05:00"},
            PaperMeta(arxiv_id="2401.12345", published="2024-01-16"),
        ),
        ({"publishedAt": 1705000000}, PaperMeta(arxiv_id="2401.12345")),
        ({"id": "2401.12345v3"}, PaperMeta(arxiv_id="2401.12345")),
        ({"id": "hep-th/9901001"}, PaperMeta(arxiv_id="hep-th/9901001")),
        ({"id": "math.AG/0101001v2"}, PaperMeta(arxiv_id="math.AG/0101001")),
        ({"id": "2401.123"}, PaperMeta()),
        ({"id": "٢٤٠١.١٢٣٤٥"}, PaperMeta()),
        ({"id": 240112345}, PaperMeta()),
    ],
)
def test_daily_papers_fields_of_the_wrong_type_or_size_are_dropped(
    fields: dict[str, object], meta: PaperMeta
) -> None:
    parsed = parse_daily_papers(json.dumps([paper(**fields)]).encode(), "t")
    assert [entry.meta for entry in parsed.entries] == [meta]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("a string", "item 1: not an object but a string"),
        (None, "item 1: not an object but null"),
        ({"paper": {"summary": ABSTRACT}}, "item 1: title missing"),
        ({"paper": {"title": 7, "summary": ABSTRACT}}, "item 1: title missing"),
        ({"paper": {"title": "A Title"}}, "item 1: summary missing"),
        ({"paper": {"title": " \n ", "summary": ABSTRACT}}, "item 1: title missing"),
        (
            {"paper": "nope", "title": "A Title", "summary": "short"},
            "item 1: abstract of 5 characters, under 150",
        ),
    ],
)
def test_daily_papers_an_item_that_fails_is_named(item: object, reason: str) -> None:
    good = paper()
    parsed = parse_daily_papers(json.dumps([item, good]).encode(), "t")
    assert parsed.skipped == [reason]
    assert [(e.position, e.line) for e in parsed.entries] == [(1, 2)]


def test_daily_papers_the_items_own_title_and_summary_stand_in_for_the_papers() -> None:
    item = {"paper": {"id": "2401.12345"}, "title": "Listed Title", "summary": ABSTRACT}
    (entry,) = parse_daily_papers(json.dumps([item]).encode(), "t").entries
    assert entry.title == "Listed Title"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON: Expecting value at byte 0"),
        (b"<html>rate limited</html>", "not JSON: Expecting value at byte 0"),
        (b"[1, 2", "not JSON: Expecting ',' delimiter at byte 5"),
        (b'["\xff"]', "not JSON: not UTF-8 text (byte 2)"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (b'{"error": "Invalid date"}', "not a list of papers but an object"),
        (b'"papers"', "not a list of papers but a string"),
        (b"[1]", "no usable item: item 1: not an object but a number"),
        (
            b'[{"paper": {}}, {"paper": {}}, {}]',
            "no usable item: item 1: title missing (and 2 more)",
        ),
    ],
)
def test_daily_papers_a_response_that_is_not_a_listing_fails_precisely(
    body: bytes, reason: str
) -> None:
    with pytest.raises(SourceFailed) as caught:
        parse_daily_papers(body, "t")
    assert caught.value.reason == reason


def test_daily_papers_an_empty_day_is_an_empty_listing() -> None:
    assert parse_daily_papers(b"[]", "t") == Parsed()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
paper_keys = st.sampled_from(
    [
        "id",
        "title",
        "summary",
        "authors",
        "upvotes",
        "publishedAt",
        "githubRepo",
        "paper",
        "numComments",
    ]
)
item_like = st.dictionaries(paper_keys, json_values, max_size=8).map(lambda d: {"paper": d, **d})


@settings(max_examples=60)
@given(json_values | st.lists(json_values | item_like, max_size=6))
def test_daily_papers_raises_nothing_but_source_failed_on_any_json(value: object) -> None:
    try:
        parsed = parse_daily_papers(json.dumps(value).encode(), "t")
    except SourceFailed:
        return
    assert all(entry_problem(entry.title, entry.abstract) is None for entry in parsed.entries)


words = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=12
)
titles = st.lists(words, min_size=1, max_size=8).map(" ".join)
abstracts = st.lists(words, min_size=1, max_size=8).map(
    lambda ws: f"{ABSTRACT.strip()} {' '.join(ws)}"
)
metas = st.builds(
    PaperMeta,
    arxiv_id=st.from_regex(r"\A2[0-9]{3}\.[0-9]{5}\Z"),
    authors=st.lists(words, max_size=5).map(tuple),
    published=st.dates().map(lambda d: d.isoformat()),
    upvotes=st.integers(min_value=0, max_value=10**9),
    comments=st.integers(min_value=0, max_value=10**9),
    github=st.from_regex(r"\Ahttps://github\.com/[a-z]{1,8}/[a-z]{1,8}\Z"),
)


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(titles, abstracts, metas),
        max_size=5,
        unique_by=lambda row: " ".join(row[0].casefold().split()),
    )
)
def test_daily_papers_round_trips_valid_items(rows: list[tuple[str, str, PaperMeta]]) -> None:
    items = [
        {
            "paper": {
                "id": meta.arxiv_id,
                "title": title,
                "summary": abstract,
                "authors": [{"name": name, "hidden": False} for name in meta.authors],
                "publishedAt": f"{meta.published}T12:00:00.000Z",
                "upvotes": meta.upvotes,
                "githubRepo": meta.github,
            },
            "numComments": meta.comments,
        }
        for title, abstract, meta in rows
    ]
    parsed = parse_daily_papers(json.dumps(items).encode(), "t")
    assert parsed.skipped == []
    assert [(e.position, e.title, e.abstract, e.meta) for e in parsed.entries] == [
        (n, title, abstract, meta) for n, (title, abstract, meta) in enumerate(rows, start=1)
    ]


# --- arXiv ----------------------------------------------------------------------------------


def test_arxiv_rss_maps_every_field_and_keeps_new_and_cross() -> None:
    parsed = parse_arxiv((FIXTURES / "arxiv.rss").read_bytes(), "cs.LG")
    first, cross, old_style = parsed.entries
    assert first.title == "Gradient Noise Shapes the Loss Landscape of Small Transformers"
    assert first.abstract.startswith("We measure how the noise of stochastic gradients")
    assert first.links == ("https://github.com/example/grad-noise",)
    assert first.meta == PaperMeta(
        arxiv_id="2509.06101",
        authors=("Zoë Ångström", "Łukasz Wiśniewski", "Ada Quinn"),
        categories=("cs.LG", "stat.ML"),
        published="2025-09-09",
    )
    assert cross.title == "Mass Transport Priors for Protein Design"
    assert cross.abstract.endswith("the abstract has <b>markup-like</b> text & an ampersand.")
    assert cross.meta is not None
    assert cross.meta.categories == ("q-bio.BM", "cs.LG")
    assert old_style.meta is not None
    assert old_style.meta.arxiv_id == "hep-th/9901001"
    assert [(e.position, e.line) for e in parsed.entries] == [(1, 1), (2, 2), (3, 6)]
    assert parsed.replaced == 2
    assert parsed.skipped == ["item 5: abstract of 27 characters, under 150"]
    assert parsed.listing_date == "2025-09-09"


def test_arxiv_atom_reads_the_same() -> None:
    parsed = parse_arxiv((FIXTURES / "arxiv.atom").read_bytes(), "cs.CL")
    assert [e.title for e in parsed.entries] == [
        "Tokenizers That Know Morphology",
        "Speech Models Hear Punctuation",
    ]
    assert parsed.entries[0].meta == PaperMeta(
        arxiv_id="2509.06300",
        authors=("Ada Quinn", "Zoë Ångström"),
        categories=("cs.CL", "cs.AI"),
        published="2025-09-09",
    )
    assert parsed.entries[0].abstract.startswith(
        "A tokenizer trained with a morphological analyser"
    )
    assert (parsed.replaced, parsed.skipped) == (1, [])


def rss(*items: str) -> bytes:
    head = '<rss version="2.0" xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>'
    return (head + "".join(items) + "</channel></rss>").encode()


def item(title: str, announce: str | None, description: str, extra: str = "") -> str:
    tag = f"<arxiv:announce_type>{announce}</arxiv:announce_type>" if announce else ""
    return (
        f"<item><title>{title}</title><description>{description}</description>{tag}{extra}</item>"
    )


def test_arxiv_the_announce_type_is_read_from_the_description_when_the_element_is_missing() -> None:
    body = rss(
        item("Kept", None, f"arXiv:2509.00001v1 Announce Type: new \nAbstract: {ABSTRACT}"),
        item("Left Out", None, f"arXiv:2509.00002v2 Announce Type: replace \nAbstract: {ABSTRACT}"),
    )
    parsed = parse_arxiv(body, "t")
    assert [(e.title, e.meta and e.meta.arxiv_id) for e in parsed.entries] == [
        ("Kept", "2509.00001")
    ]
    assert parsed.replaced == 1


def test_arxiv_an_unknown_announce_type_is_skipped_with_a_reason() -> None:
    body = rss(item("Odd", "withdrawn", ABSTRACT), item("Fine", "new", ABSTRACT))
    assert parse_arxiv(body, "t").skipped == [
        "item 1: announce type 'withdrawn', neither new nor cross"
    ]


def test_arxiv_a_feed_of_replacements_only_is_empty_not_broken() -> None:
    parsed = parse_arxiv(rss(item("Again", "replace", ABSTRACT)), "t")
    assert (parsed.entries, parsed.skipped, parsed.replaced) == ([], [], 1)


def test_arxiv_the_older_query_api_atom_is_read_too() -> None:
    body = f"""<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
      <entry><id>http://arxiv.org/abs/2401.12345v2</id><published>2024-01-22T18:59:59Z</published>
        <title>A Query API
          Result</title><summary>  {ABSTRACT}
        </summary><author><name>Ada Quinn</name></author><author><name>Ben O'Reilly</name></author>
        <link href="http://arxiv.org/abs/2401.12345v2" rel="alternate" type="text/html"/>
        <arxiv:primary_category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
        <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/><category term="cs.AI" scheme="http://arxiv.org/schemas/atom"/>
      </entry></feed>""".encode()
    (entry,) = parse_arxiv(body, "t").entries
    assert entry.title == "A Query API Result"
    assert entry.abstract == ABSTRACT.strip()
    assert entry.meta == PaperMeta(
        arxiv_id="2401.12345",
        authors=("Ada Quinn", "Ben O'Reilly"),
        categories=("cs.LG", "cs.AI"),
        published="2024-01-22",
    )


@pytest.mark.parametrize(
    "body", [b"", b"not a feed", b'[{"paper": {}}]', b"<html><body>Rate exceeded.</body></html>"]
)
def test_arxiv_a_response_that_is_not_a_feed_fails(body: bytes) -> None:
    with pytest.raises(SourceFailed) as caught:
        parse_arxiv(body, "t")
    assert caught.value.reason.startswith("not an RSS or Atom feed")


# --- dispatch -------------------------------------------------------------------------------


def test_every_kind_parses_through_one_door(seed_files: list[Path]) -> None:
    assert KINDS == ("daily-papers", "arxiv", "dump")
    dump = parse("dump", seed_files[0].read_bytes(), "https://example.org/dump.txt")
    assert len(dump.entries) == 54
    assert dump.listing_date == "Jul 30"
    assert (
        len(parse("daily-papers", (FIXTURES / "daily_papers.json").read_bytes(), "hf").entries) == 4
    )
    assert len(parse("arxiv", (FIXTURES / "arxiv.atom").read_bytes(), "cs.CL").entries) == 2


def test_a_rejected_dump_is_the_reason_a_dump_source_fails() -> None:
    with pytest.raises(SourceFailed) as caught:
        parse("dump", b"A Title Without an Abstract\n", "https://example.org/dump.txt")
    assert (
        caught.value.reason
        == "https://example.org/dump.txt:1: this title has no abstract: the file ends after it"
    )


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown source kind 'rss'"):
        parse("rss", b"", "t")


@settings(max_examples=examples(300))
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=" \t\u00a0\u202eab\x00\ud800", max_size=8),
        st.none(),
        st.integers(),
    )
)
def test_a_names_quick_path_says_what_the_careful_one_says(value: object) -> None:
    assert person(value) == careful_person(value)


def item_of(arxiv: str, title: str) -> dict[str, object]:
    return {"paper": {"id": arxiv, "title": title, "summary": ABSTRACT}}


@pytest.mark.parametrize(
    ("items", "kept", "skipped"),
    [
        # one arXiv id under two titles: one paper (the second would break the id's uniqueness)
        ([item_of("2501.00001", "Title One"), item_of("2501.00001v2", "Title Two")], 1, 1),
        # one title, two arXiv ids: two papers
        ([item_of("2501.00001", "Same Title"), item_of("2501.00002", "Same Title")], 2, 0),
        # one title, one id missing: the same paper
        ([item_of("2501.00001", "Same Title"), item_of("", "Same Title")], 1, 1),
        ([item_of("2501.00001", "Same Title"), item_of("2501.00001", "same  title")], 1, 1),
    ],
)
def test_repeats_within_a_response_are_told_by_arxiv_id_then_title(
    items: list[dict[str, object]], kept: int, skipped: int
) -> None:
    parsed = parse_daily_papers(json.dumps(items).encode(), "hf")
    assert len(parsed.entries) == kept
    assert len(parsed.skipped) == skipped
    assert all("the same paper as item 1" in reason for reason in parsed.skipped)


@pytest.mark.parametrize(
    ("url", "shown_as"),
    [
        ("https://user:secret@api.example/papers?key=abc", "https://api.example/papers?…"),
        ("http://127.0.0.1:8080/api/daily_papers", "http://127.0.0.1:8080/api/daily_papers"),
        ("https://api.example/x#frag", "https://api.example/x"),
    ],
)
def test_errors_never_show_a_urls_user_password_or_query(url: str, shown_as: str) -> None:
    assert shown(url) == shown_as


def test_an_http_error_names_the_url_without_its_key() -> None:
    with serve(lambda handler, site: reply(handler, 500, b"no")) as site:
        secret = site.url.replace("http://", "http://me:pw@") + "/api?token=abc"
        err = failure(secret)
    assert "pw" not in err.reason
    assert "abc" not in err.reason
    assert "HTTP 500 from" in err.reason
