"""Fetching sources: ``digest fetch`` and the service's fetch job against a real local server.

The server (``http_servers``) answers with the fixtures of ``fixtures/sources/`` in
their real shapes; it honours ``If-None-Match`` the way a real API does, fails
when told, stalls when told.  Everything runs through the CLI or ``fetching``
itself with a real store file and a real archive folder.
"""

import json
import os
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from digest import archive, fetching, lifecycle, pipeline, retention, subscribers
from digest.config import Config, SourceTable
from digest.errors import ConfigError
from digest.ingest import ingest_files
from digest.store import SourceState, Store, iso

from .conftest import NOW, RunCli, make_config
from .http_servers import Site, chunked_forever, reply, serve
from .smtp_servers import Server
from .test_scheduler import Running

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
DAILY = (FIXTURES / "daily_papers.json").read_bytes()
RSS = (FIXTURES / "arxiv.rss").read_bytes()
ETAG = '"v1"'
SEED = sorted((Path(__file__).parent.parent / "examples" / "dumps").glob("*.txt"))[0]
BAD = {
    "/truncated": DAILY[: len(DAILY) // 2],
    "/shape": b'{"papers": []}',
    "/untitled": b'[{"paper": {"id": "2501.00001", "summary": "x"}}]',
    "/notxml": b"this is no feed at all",
    "/huge": b"[" + b" " * (2 << 20) + b"]",
}


def api(handler: BaseHTTPRequestHandler, site: Site) -> None:
    """The Daily Papers API, conditional on its one ETag; ``/broken`` fails, ``/garbage``
    is not JSON, ``/rss`` is an arXiv feed."""
    path = handler.path
    if path.startswith("/broken"):
        reply(handler, 500, b"oops")
    elif path.startswith("/busy"):
        reply(handler, 503, b"busy", {"Retry-After": "7200"})
    elif path.startswith("/garbage"):
        reply(handler, 200, b"<html>maintenance</html>", {"Content-Type": "text/html"})
    elif path.startswith("/rss"):
        reply(handler, 200, RSS, {"Content-Type": "application/rss+xml"})
    elif path.startswith("/stall"):
        chunked_forever(handler, site, b"[", 0.05)
    elif path in BAD:
        reply(handler, 200, BAD[path])
    elif path.startswith("/loop"):
        reply(handler, 302, b"", {"Location": "/loop"})
    elif path.startswith("/dump"):
        reply(handler, 200, SEED.read_bytes(), {"Content-Type": "text/plain"})
    elif path.startswith("/flaky"):
        site.requests.append(("flaky", {}))
        failing = sum(1 for p, _ in site.requests if p == "flaky") == 1
        reply(handler, *((500, b"oops") if failing else (200, DAILY)))
    elif handler.headers.get("If-None-Match") == ETAG:
        reply(handler, 304)
    else:
        reply(handler, 200, DAILY, {"ETag": ETAG, "Content-Type": "application/json"})


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(api) as running:
        yield running


def configured(tmp_path: Path, site: Site, *paths: str, kinds: tuple[str, ...] = ()) -> Path:
    """A config file whose sources are ``paths`` on the local site (daily-papers unless
    ``kinds`` says otherwise), with the database created."""
    sources = "".join(
        f'[[sources]]\nname = "s{n}"\nkind = "{kinds[n] if n < len(kinds) else "daily-papers"}"\n'
        f'url = "{site.url}{path}"\nevery = "1h"\n'
        for n, path in enumerate(paths)
    )
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\ndatabase = "var/digest.db"\n[inbox]\ndir = "inbox"\n'
        '[delivery]\nmaildir = "mail"\n[feeds]\ndir = "feeds"\n'
        '[fetch]\narchive_dir = "archive"\ncontact_url = "https://lab.example/digest"\n' + sources,
        encoding="utf-8",
    )
    Store(tmp_path / "var" / "digest.db").close()
    return path


def opened(tmp_path: Path) -> closing[Store]:
    return closing(Store(tmp_path / "var" / "digest.db"))


def test_fetch_stores_the_papers_with_what_the_source_knows_and_keeps_the_response(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/api/daily_papers")
    result = run_cli("fetch", "--json", config=config)
    assert result.exit_code == 0, result.stderr
    (report,) = result.json()
    assert report["status"] == "ingested"
    assert report["new"] == report["entries"] >= 3
    assert report["skipped"], "the fixture holds items the rules refuse"
    with opened(tmp_path) as store:
        papers = {p.meta.arxiv_id: p for p in store.papers()}
    assert "2509.05123" in papers  # stored without its version
    hostile = papers["2509.05123"]
    assert hostile.title.startswith("<script>")
    assert hostile.meta.authors
    archived = tmp_path / "archive" / report["archived"]
    assert archived.read_bytes() == DAILY
    found = archive.parse_name(archived.name)
    assert found is not None
    assert (found.source, found.kind) == ("s0", "daily-papers")
    _path, headers = site.requests[-1]
    assert "digest/" in headers["User-Agent"]
    assert "https://lab.example/digest" in headers["User-Agent"]


def test_an_unchanged_listing_costs_one_conditional_request_and_adds_nothing(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/api/daily_papers")
    assert run_cli("fetch", config=config).exit_code == 0
    with opened(tmp_path) as store:
        before = store.status()
    again = run_cli("fetch", config=config)
    assert again.exit_code == 0
    assert "not modified" in again.stdout
    assert site.requests[-1][1]["If-None-Match"] == ETAG
    with opened(tmp_path) as store:
        assert store.status()["dumps"] == before["dumps"]
        assert store.status()["papers"] == before["papers"]
    assert len(list((tmp_path / "archive").iterdir())) == 1


def test_the_same_response_twice_is_a_duplicate_like_the_same_dump_twice(
    tmp_path: Path, site: Site
) -> None:
    config = make_config(
        tmp_path, storage={"database": "digest.db"}, fetch={"archive_dir": "archive"}
    )
    source = SourceTable(name="hf", kind="daily-papers", url=f"{site.url}/api/daily_papers")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        first = fetching.fetch_source(store, config, c, source, NOW, asking="force")
        assert first.archived is not None
        # a server that forgot its ETag sends the same bytes again
        store.save_source_state(SourceState("hf"))
        second = fetching.fetch_source(
            store, config, c, source, NOW + timedelta(hours=1), asking="force"
        )
    assert first.status == "ingested"
    assert second.status == "duplicate"
    assert second.new == 0
    assert second.archived is None
    assert [p.name for p in (tmp_path / "archive").iterdir()] == [first.archived]


def test_one_failing_source_neither_stops_the_others_nor_hides(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/broken", "/api/daily_papers")
    result = run_cli("fetch", "--json", config=config)
    assert result.exit_code == 1
    broken, working = result.json()
    assert broken["status"] == "failed"
    assert "500" in broken["error"]
    assert working["status"] == "ingested"
    status = run_cli("status", "--json", config=config).json()
    states = {s["name"]: s for s in status["sources"]}
    assert states["s0"]["failures"] == 1
    assert "500" in states["s0"]["last_error"]
    assert states["s1"]["failures"] == 0
    assert states["s1"]["last_success"]
    assert (states["s1"]["kind"], states["s1"]["enabled"]) == ("daily-papers", True)
    text = run_cli("status", config=config).stdout
    assert "s0: failing (1×" in text
    assert "s1: ok" in text


def test_a_failing_source_backs_off_and_retry_after_is_honoured(tmp_path: Path, site: Site) -> None:
    config = make_config(tmp_path, storage={"database": "digest.db"})
    broken = SourceTable(name="broken", kind="daily-papers", url=f"{site.url}/broken", every="1h")
    busy = SourceTable(name="busy", kind="daily-papers", url=f"{site.url}/busy", every="1h")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        asked = len(site.requests)
        fetching.fetch_all(store, config, c, NOW, [broken, busy])
        assert len(site.requests) == asked + 2
        fetching.fetch_all(store, config, c, NOW + timedelta(minutes=59), [broken, busy])
        assert len(site.requests) == asked + 2, "never more often than every"
        fetching.fetch_all(store, config, c, NOW + timedelta(hours=1), [broken, busy])
        assert len(site.requests) == asked + 3, "busy asked for two hours"
        assert store.source_state("broken").failures == 2
        later = datetime.fromisoformat(store.source_state("broken").next_attempt or "")
        assert later - (NOW + timedelta(hours=1)) >= timedelta(hours=2), "backs off"
        assert store.source_state("busy").next_attempt == iso(NOW + timedelta(hours=2))


def test_a_response_that_cannot_be_read_is_rejected_kept_and_counted_as_a_failure(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/garbage")
    result = run_cli("fetch", "--json", config=config)
    assert result.exit_code == 1
    (report,) = result.json()
    assert report["status"] == "failed"
    assert "not JSON" in report["error"]
    assert (tmp_path / "archive" / report["archived"]).exists()
    with opened(tmp_path) as store:
        assert store.rejections_summary()[0] == 1
        assert store.count("papers") == 0


def test_an_archived_response_replays_through_digest_ingest(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/api/daily_papers")
    report = run_cli("fetch", "--json", config=config).json()[0]
    archived = tmp_path / "archive" / report["archived"]
    again = run_cli("ingest", "--json", str(archived), config=config)
    assert again.exit_code == 0
    assert again.json()["files"][0]["status"] == "duplicate"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    config_fresh = configured(fresh, site)
    replayed = run_cli("ingest", "--json", str(archived), config=config_fresh).json()["files"][0]
    assert replayed["status"] == "ingested"
    assert replayed["new"] == report["new"]
    with opened(fresh) as store:
        assert {p.meta.arxiv_id for p in store.papers()} >= {"2509.05123"}


def test_an_arxiv_feed_is_fetched_and_its_announcement_day_is_the_listing(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/rss", kinds=("arxiv",))
    (report,) = run_cli("fetch", "--json", config=config).json()
    assert report["status"] == "ingested"
    with opened(tmp_path) as store:
        papers = store.papers()
        assert papers
        assert all(p.meta.categories for p in papers)


def test_date_asks_for_that_days_listing_of_daily_papers_sources_only_leaving_their_state(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(
        tmp_path, site, "/api/daily_papers", "/rss", kinds=("daily-papers", "arxiv")
    )
    assert run_cli("fetch", config=config).exit_code == 0
    with opened(tmp_path) as store:
        before = [store.source_state(name) for name in ("s0", "s1")]
    asked = len(site.requests)
    result = run_cli("fetch", "--date", "2026-11-20", config=config)
    assert result.exit_code == 0, result.stderr
    assert [path for path, _ in site.requests[asked:]] == ["/api/daily_papers?date=2026-11-20"]
    assert "If-None-Match" not in site.requests[-1][1]
    with opened(tmp_path) as store:
        assert [store.source_state(name) for name in ("s0", "s1")] == before
    refused = run_cli("fetch", "--source", "s1", "--date", "2026-11-20", config=config)
    assert refused.exit_code == 2
    assert "daily-papers sources only" in refused.stderr


def test_fetch_asks_now_but_lets_a_failing_source_back_off_unless_forced(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/busy")
    assert run_cli("fetch", config=config).exit_code == 1
    asked = len(site.requests)
    waiting = run_cli("fetch", config=config)
    assert waiting.exit_code == 0
    assert "backing off until" in waiting.stdout
    assert len(site.requests) == asked, "Retry-After is honoured"
    assert run_cli("fetch", "--force", config=config).exit_code == 1
    assert len(site.requests) == asked + 1


def test_the_service_never_asks_a_source_more_often_than_every(tmp_path: Path, site: Site) -> None:
    config = make_config(tmp_path, storage={"database": "digest.db"}, fetch={"archive_dir": "a"})
    source = SourceTable(
        name="hf", kind="daily-papers", url=f"{site.url}/api/daily_papers", every="1h"
    )
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        for minutes in (0, 1, 30, 59, 60, 61, 119, 120):
            fetching.fetch_all(store, config, c, NOW + timedelta(minutes=minutes), [source])
    asked = [path for path, _ in site.requests]
    assert len(asked) == 3, "at 0, 60 and 120 minutes: after an answer and after a 304 alike"


def test_fetch_without_sources_or_with_an_unknown_one_is_a_usage_error(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    none = run_cli("fetch")
    assert none.exit_code == 2
    assert "[[sources]]" in none.stderr
    config = configured(tmp_path, site, "/api/daily_papers")
    unknown = run_cli("fetch", "--source", "nope", config=config)
    assert unknown.exit_code == 2
    assert "no source named 'nope'" in unknown.stderr


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"name": "Bad Name", "kind": "arxiv", "url": "https://x.org"}, "lower-case"),
        ({"name": "a", "kind": "rss", "url": "https://x.org"}, "kind"),
        ({"name": "a", "kind": "arxiv", "url": "ftp://x.org"}, "http"),
        ({"name": "a", "kind": "arxiv", "url": "https://x.org", "every": "1m"}, "5 minutes"),
        ({"name": "a", "kind": "arxiv", "url": "https://x.org", "every": "hourly"}, "duration"),
    ],
)
def test_a_bad_source_table_is_a_config_error_naming_it(
    tmp_path: Path, table: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        make_config(tmp_path, sources=[table])
    assert "[[sources]] #1" in str(caught.value)


def test_two_sources_with_one_name_are_refused(tmp_path: Path) -> None:
    twice = {"name": "a", "kind": "arxiv", "url": "https://x.org"}
    with pytest.raises(ConfigError, match="given twice"):
        make_config(tmp_path, sources=[twice, twice])


class Watching(list[tuple[str, dict[str, str]]]):
    """The site's request log, setting ``asked`` at the first request."""

    def __init__(self, asked: threading.Event) -> None:
        super().__init__()
        self.asked = asked

    def append(self, item: tuple[str, dict[str, str]]) -> None:
        super().append(item)
        self.asked.set()


def test_a_stop_cancels_the_fetch_in_flight_and_records_nothing_against_the_source(
    tmp_path: Path, site: Site
) -> None:
    config: Config = make_config(tmp_path, storage={"database": "digest.db"})
    stalls = SourceTable(name="stalls", kind="daily-papers", url=f"{site.url}/stall")
    later = SourceTable(name="later", kind="daily-papers", url=f"{site.url}/api/daily_papers")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        asked = threading.Event()
        site.requests = Watching(asked)
        stopper = threading.Thread(target=lambda: (asked.wait(10), c.cancel()))
        stopper.start()
        started = datetime.now()
        results = fetching.fetch_all(store, config, c, NOW, [stalls, later])
        stopper.join()
    assert datetime.now() - started < timedelta(seconds=10)
    assert [r.source for r in results] == ["stalls"], "the rest wait for the next run"
    with closing(Store(config.storage.database)) as store:
        assert store.source_state("stalls").failures == 0


def test_run_once_fetches_the_due_sources_before_ingesting_the_inbox(
    tmp_path: Path, site: Site
) -> None:
    config = make_config(
        tmp_path,
        storage={"database": "digest.db"},
        inbox={"dir": "inbox"},
        delivery={"maildir": "mail"},
        feeds={"dir": "feeds"},
        fetch={"archive_dir": "archive"},
        sources=[{"name": "hf", "kind": "daily-papers", "url": f"{site.url}/api/daily_papers"}],
    )
    report = pipeline.run_once(config, lambda: NOW)
    assert [r.status for r in report.fetched] == ["ingested"]
    with closing(Store(config.storage.database)) as store:
        assert store.count("papers") == report.fetched[0].new


def test_an_archive_name_says_source_listing_time_and_kind_and_nothing_else_parses(
    tmp_path: Path,
) -> None:
    name = archive.name_for("hf", "daily-papers", "2026-11-24", NOW)
    assert name == "hf.2026-11-24.20261124T070000000000Z.daily-papers.json"
    assert archive.parse_name(name) == archive.Archived("hf", "2026-11-24", NOW, "daily-papers")
    for other in (
        "2026-11-24.txt",
        "hf.2026-13-40.20261124T070000000000Z.arxiv.xml",
        "hf.2026-11-24.20261124T070000Z.dump.txt",
        name + ".tmp",
    ):
        assert archive.parse_name(other) is None


def test_prune_removes_old_responses_only_and_leaves_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    old = archive.keep(
        folder, archive.name_for("hf", "dump", "2026-10-01", NOW - timedelta(days=40)), b"x"
    )
    new = archive.keep(
        folder, archive.name_for("hf", "dump", "2026-11-20", NOW - timedelta(days=4)), b"y"
    )
    notes = folder / "notes.txt"
    notes.write_text("the operator's own")
    config = make_config(
        tmp_path, storage={"database": "digest.db"}, fetch={"archive_dir": "archive"}
    )
    with closing(Store(config.storage.database)) as store:
        dry = retention.prune(store, config, NOW, dry_run=True)
        assert old.exists()
        report = retention.prune(store, config, NOW)
    rule = next(pruned for text, pruned in report.rules if "archived" in text)
    assert (rule.rows, rule.bytes) == (1, 1)
    assert dry.as_json()["rules"] == report.as_json()["rules"]
    assert not old.exists()
    assert new.exists()
    assert notes.exists()


@pytest.mark.slow
def test_the_daemon_fetches_delivers_what_one_source_brought_while_another_stalls_and_stops_in_time(
    tmp_path: Path, site: Site, sink: Server
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[storage]\ndatabase = "var/digest.db"\n[inbox]\ndir = "inbox"\n[feeds]\ndir = "feeds"\n'
        f'[delivery]\nbackend = "smtp"\n[smtp]\nport = {sink.port}\n'
        '[schedule]\npoll_seconds = 1\ndeliver_at = ["after_ingest"]\n'
        '[fetch]\narchive_dir = "archive"\ntimeout_seconds = 600\n'
        f'[[sources]]\nname = "hf"\nkind = "daily-papers"\nurl = "{site.url}/api/daily_papers"\n'
        f'[[sources]]\nname = "slow"\nkind = "daily-papers"\nurl = "{site.url}/stall"\n',
        encoding="utf-8",
    )
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        lifecycle.add(
            store, subscribers.Wanted("ada@example.org", "retrieval OR routing"), "operator", NOW
        )
    service = Running(config, tmp_path / "n.sock")
    service.expect("READY=1")
    [message] = sink.handler.wait_for(1, timeout=30)  # from hf, while slow still stalls
    assert message.rcpt_tos == ("ada@example.org",)
    assert any(path == "/stall" for path, _ in site.requests)
    code, err = service.stop()  # asserts the exit within 10 s of SIGTERM
    assert code == 0, err
    assert "source hf: ingested" in err
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        assert store.source_state("slow").failures == 0, "a stop is not the source's failure"


@pytest.mark.parametrize(
    ("path", "kind", "complaint"),
    [
        ("/garbage", "daily-papers", "not JSON"),
        ("/truncated", "daily-papers", "not JSON"),
        ("/shape", "daily-papers", "list"),
        ("/untitled", "daily-papers", "title"),
        ("/notxml", "arxiv", "feed"),
        ("/huge", "daily-papers", "response over"),
        ("/loop", "daily-papers", "redirect"),
    ],
)
def test_bad_input_is_a_clear_failure_that_stores_nothing(
    tmp_path: Path, site: Site, path: str, kind: str, complaint: str
) -> None:
    config = make_config(
        tmp_path,
        storage={"database": "digest.db"},
        fetch={"archive_dir": "archive", "max_megabytes": 1},
    )
    source = SourceTable(name="bad", kind=kind, url=f"{site.url}{path}")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        (result,) = fetching.fetch_all(store, config, c, NOW, [source])
        assert result.status == "failed"
        assert complaint.casefold() in (result.error or "").casefold(), result.error
        assert store.count("papers") == 0
        assert store.count("dumps") == 0
        assert store.source_state("bad").failures == 1


def test_a_dump_at_a_url_is_fetched_like_a_dump_in_the_inbox(
    tmp_path: Path, site: Site, seed_files: list[Path]
) -> None:
    config = make_config(tmp_path, storage={"database": "digest.db"}, fetch={"archive_dir": "a"})
    source = SourceTable(name="mirror", kind="dump", url=f"{site.url}/dump")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        (result,) = fetching.fetch_all(store, config, c, NOW, [source])
        assert result.status == "ingested"
        assert result.new == store.count("papers") > 0
    inbox = make_config(tmp_path / "other", storage={"database": "digest.db"})
    (tmp_path / "other").mkdir()
    with closing(Store(inbox.storage.database)) as store:
        ingest_files(store, [SEED], NOW)
        assert store.count("papers") == result.new


def test_a_source_that_fails_then_answers_is_well_again(tmp_path: Path, site: Site) -> None:
    config = make_config(tmp_path, storage={"database": "digest.db"}, fetch={"archive_dir": "a"})
    source = SourceTable(name="flaky", kind="daily-papers", url=f"{site.url}/flaky")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        (first,) = fetching.fetch_all(store, config, c, NOW, [source])
        assert first.status == "failed"
        (second,) = fetching.fetch_all(store, config, c, NOW + timedelta(hours=1), [source])
        assert second.status == "ingested"
        state = store.source_state("flaky")
    assert state.failures == 0
    assert state.last_success == iso(NOW + timedelta(hours=1))
    assert state.last_error  # the last error is kept for the operator, dated


def test_a_seed_paper_then_seen_by_a_source_is_one_paper_whose_digest_links_its_abstract(
    tmp_path: Path, seed_files: list[Path], run_cli: RunCli
) -> None:
    assert run_cli("ingest", *map(str, seed_files)).exit_code == 0
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        seeded = store.papers()[0]
        before = store.count("papers")
    item = {
        "paper": {
            "id": "2411.04242v2",
            "title": f"  {seeded.title.upper()} ",
            "summary": seeded.abstract,
            "authors": [{"name": "Łukasz Kaiser"}, {"name": "Ada Lovelace"}],
            "upvotes": 42,
        },
        "numComments": 3,
    }
    body = json.dumps([item]).encode()
    with serve(lambda handler, site: reply(handler, 200, body)) as site:
        config = tmp_path / "config.toml"
        config.write_text(
            config.read_text(encoding="utf-8")
            + f'[[sources]]\nname = "hf"\nkind = "daily-papers"\nurl = "{site.url}/api"\n',
            encoding="utf-8",
        )
        fetched = run_cli("fetch", "--json")
    assert fetched.exit_code == 0, fetched.stderr
    assert fetched.json()[0]["new"] == 0
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        assert store.count("papers") == before
        paper = store.paper(seeded.id)
        assert paper is not None
        assert paper.meta.arxiv_id == "2411.04242"
        assert paper.meta.authors == ("Łukasz Kaiser", "Ada Lovelace")
        assert paper.meta.upvotes == 42
        lifecycle.add(
            store, subscribers.Wanted("ada@example.org", f'"{seeded.title}"'), "operator", NOW
        )
    preview = run_cli("preview", "ada@example.org", "--text")
    assert preview.exit_code == 0, preview.stderr
    assert "https://arxiv.org/abs/2411.04242" in preview.stdout
    assert "Łukasz Kaiser and Ada Lovelace" in preview.stdout


def test_a_file_named_like_an_archived_response_in_the_inbox_is_only_a_dump(
    tmp_path: Path, run_cli: RunCli
) -> None:
    forged = [
        {"paper": {"id": "2501.09999", "title": "Pinned", "summary": "x " * 100, "upvotes": 10**9}}
    ]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    name = archive.name_for("hf", "daily-papers", "2026-11-24", NOW)
    (inbox / name).write_text(json.dumps(forged), encoding="utf-8")
    os.utime(inbox / name, (NOW.timestamp(), NOW.timestamp()))  # settled long ago
    result = run_cli("ingest", "--inbox", "--json")
    assert result.exit_code == 1
    (report,) = result.json()["files"]
    assert report["status"] == "rejected"
    with opened(tmp_path) as store:
        assert store.count("papers") == 0


def test_the_same_bad_response_day_after_day_is_archived_and_recorded_once(
    tmp_path: Path, site: Site
) -> None:
    config = make_config(tmp_path, storage={"database": "digest.db"}, fetch={"archive_dir": "a"})
    source = SourceTable(name="login", kind="daily-papers", url=f"{site.url}/garbage")
    with closing(Store(config.storage.database)) as store, fetching.make_client(config.fetch) as c:
        results = [
            fetching.fetch_source(store, config, c, source, NOW + timedelta(days=d), asking="force")
            for d in range(3)
        ]
        assert store.rejections_summary()[0] == 1
        assert store.source_state("login").failures == 3
    assert [r.status for r in results] == ["failed"] * 3
    assert len(list((tmp_path / "a").iterdir())) == 1
    assert results[0].archived is not None


def test_status_says_a_disabled_source_is_disabled(
    tmp_path: Path, site: Site, run_cli: RunCli
) -> None:
    config = configured(tmp_path, site, "/api/daily_papers")
    config.write_text(config.read_text(encoding="utf-8") + "enabled = false\n", encoding="utf-8")
    assert "s0: disabled" in run_cli("status", config=config).stdout
