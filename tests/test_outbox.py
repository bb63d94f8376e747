"""The outbox: every digest arrives once, through real SMTP servers, across failures and crashes."""

import email
import email.policy
import sqlite3
import threading
import time
import zlib
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from digest import config as config_module
from digest import delivery, lifecycle, outbox, sending, subscribers
from digest.config import Config
from digest.ingest import ingest_files
from digest.mailer import transport_for
from digest.render import DigestContent, Renderer
from digest.store import OutboxRow, Packed, Store, iso
from digest.store.migrations import migrations

from .conftest import RunCli, make_config
from .smtp_servers import (
    BusyGreeting,
    DropMidData,
    Refuse421,
    RefuseMail,
    Reject550,
    RejectAll,
    Server,
    Sink,
    SizeLimit,
    Stall,
    down_port,
    serve,
)

PEOPLE = {
    "ada@example.org": "diffusion",
    "grace@example.org": '"language model" OR agent*',
    "alan@example.org": "reinforcement",
}


def outbox_config(
    tmp_path: Path, port: int | None = None, smtp: dict[str, Any] | None = None, **digest: Any
) -> Config:
    """Quick retries, two bounces to bounce, ten papers; through the SMTP server on ``port``
    (else to ``tmp_path/mail``)."""
    delivery: dict[str, Any] = {
        "retries": 2,
        "retry_base_seconds": 0.01,
        "bounce_limit": 2,
        "maildir": "mail",
    }
    if port is None:
        return make_config(tmp_path, delivery=delivery, digest={"max_papers": 10, **digest})
    return make_config(
        tmp_path,
        delivery={**delivery, "backend": "smtp"},
        digest={"max_papers": 10, **digest},
        smtp={"port": port, "timeout_seconds": 5.0, **(smtp or {})},
    )


@pytest.fixture
def subscribed(seeded_store: Store, now: datetime) -> Store:
    """The seeds and the three PEOPLE, added at ``now``."""
    for email_address, query in PEOPLE.items():
        lifecycle.add(seeded_store, subscribers.Wanted(email_address, query), "operator", now)
    return seeded_store


def clock_at(moment: datetime) -> delivery.Clock:
    return lambda: moment


def run_send(store: Store, config: Config, moment: datetime, **options: Any) -> outbox.SendReport:
    transport = transport_for(config.delivery, config.smtp)
    return sending.send(store, config, transport, clock_at(moment), **options)


def statuses(report: outbox.SendReport) -> dict[str, str]:
    return {d.email: d.status for d in report.digests}


def digest_rows(store: Store) -> list[OutboxRow]:
    """Every digest, oldest first."""
    return sorted(store.outbox_rows(), key=lambda row: row.id)


def test_every_due_subscriber_gets_one_digest(
    subscribed: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    report = run_send(subscribed, outbox_config(tmp_path, sink.port), now)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")
    received = sink.handler.wait_for(3)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(PEOPLE)
    assert {r.message_id for r in received} == {d.message_id for d in report.digests}
    rows = digest_rows(subscribed)
    assert [(r.status, r.has_message) for r in rows] == [("sent", False)] * 3
    assert subscribed.count("deliveries") == sum(r.papers for r in rows)
    assert report.as_json()["sent"] == 3


def test_the_json_report_has_the_documented_shape(
    subscribed: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    report = run_send(subscribed, outbox_config(tmp_path, sink.port), now).as_json()
    assert set(report) == {"sent", "deferred", "failed", "skipped", "digests", "waiting"}
    assert report["waiting"] == {"queued": 0, "deferred": 0, "next_attempt_at": None}
    assert all(
        set(d) == {"email", "status", "papers", "message_id", "error"} for d in report["digests"]
    )  # type: ignore[attr-defined]


def test_a_second_send_sends_nothing_twice(
    subscribed: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    config = outbox_config(tmp_path, sink.port)
    run_send(subscribed, config, now)
    again = run_send(subscribed, config, now + timedelta(minutes=5))
    assert again.digests == []
    assert again.not_due == 3
    next_day = run_send(subscribed, config, now + timedelta(days=1))
    assert statuses(next_day) == dict.fromkeys(PEOPLE, "skipped")
    assert sink.handler.count == 3


def test_a_send_with_nobody_due_indexes_no_papers(
    subscribed: Store, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = outbox_config(tmp_path)
    run_send(subscribed, config, now)
    monkeypatch.setattr(outbox, "Batch", unreadable_batch)
    again = run_send(subscribed, config, now + timedelta(minutes=5))
    assert (again.digests, again.not_due) == ([], 3)


def unreadable_batch(*args: Any) -> None:
    raise AssertionError("the window papers were read with nobody due")


def test_new_papers_go_out_the_next_day_without_repeating_old_ones(
    store: Store, seed_files: list[Path], sink: Server, tmp_path: Path, now: datetime
) -> None:
    config = outbox_config(tmp_path, sink.port, max_papers=200)
    ingest_files(store, seed_files[:2], now)
    ada = lifecycle.add(store, subscribers.Wanted("ada@example.org", "model"), "operator", now)
    run_send(store, config, now)
    ingest_files(store, seed_files[2:], now + timedelta(days=1))
    run_send(store, config, now + timedelta(days=1))
    rows = digest_rows(store)
    assert [r.status for r in rows] == ["sent", "sent"]
    assert sum(r.papers for r in rows) == len(store.delivered_since(0)[ada.id])


def test_an_empty_digest_is_only_sent_when_asked(
    store: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    lifecycle.add(store, subscribers.Wanted("ada@example.org", "diffusion"), "operator", now)
    quiet = run_send(store, outbox_config(tmp_path, sink.port), now)
    assert statuses(quiet) == {"ada@example.org": "skipped"}
    assert quiet.digests[0].error == "no new matching papers"
    loud = run_send(store, outbox_config(tmp_path, sink.port, send_empty=True), now)
    assert statuses(loud) == {"ada@example.org": "sent"}
    sink.handler.wait_for(1)


def test_a_dry_run_records_and_sends_nothing(
    subscribed: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    report = run_send(subscribed, outbox_config(tmp_path, sink.port), now, dry_run=True)
    assert statuses(report) == dict.fromkeys(PEOPLE, "dry-run")
    assert all(d.message_id for d in report.digests)
    assert subscribed.count("digests") == 0
    assert sink.handler.count == 0


def test_only_sends_to_one_subscriber(
    subscribed: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    report = run_send(subscribed, outbox_config(tmp_path, sink.port), now, only="GRACE@example.org")
    assert statuses(report) == {"grace@example.org": "sent"}
    assert [r.rcpt_tos for r in sink.handler.wait_for(1)] == [("grace@example.org",)]


def test_a_421_is_retried_within_the_run_with_the_same_message(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(Refuse421(on="MAIL", times=1)) as server:
        report = run_send(subscribed, outbox_config(tmp_path, server.port), now)
        received = server.handler.wait_for(3)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")
    assert sorted(r.attempts for r in digest_rows(subscribed)) == [1, 1, 2]
    assert {r.message_id for r in received} == {d.message_id for d in report.digests}


def test_a_digest_still_deferred_after_the_retries_goes_out_on_a_later_run_unchanged(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(Refuse421(on="RCPT")) as server:
        first = run_send(subscribed, outbox_config(tmp_path, server.port), now)
    assert statuses(first) == dict.fromkeys(PEOPLE, "deferred")
    rows = digest_rows(subscribed)
    assert all(r.status == "deferred" and r.attempts == 3 and r.next_attempt_at for r in rows)
    assert all("421" in r.error for r in rows)
    messages = {r.id: subscribed.message(r.id) for r in rows}
    assert all(r.next_attempt_at >= "2026-11-24T07:00:00Z" for r in rows)
    with serve(Sink()) as good:
        later = run_send(subscribed, outbox_config(tmp_path, good.port), now + timedelta(hours=1))
        received = good.handler.wait_for(3)
    assert statuses(later) == dict.fromkeys(PEOPLE, "sent")
    assert sorted(r.data.replace(b"\r\n", b"\n") for r in received) == sorted(
        m.replace(b"\r\n", b"\n") for m in messages.values()
    )


def test_a_550_fails_that_recipient_only_and_bounces_count(
    store: Store, seed_files: list[Path], tmp_path: Path, now: datetime
) -> None:
    for email_address in ("ada@example.org", "alan@example.org"):
        lifecycle.add(store, subscribers.Wanted(email_address, "model"), "operator", now)
    with serve(Reject550("alan@example.org")) as server:
        config = outbox_config(tmp_path, server.port)
        for day, files in enumerate([seed_files[:2], seed_files[2:4], seed_files[4:]]):
            ingest_files(store, files, now + timedelta(days=day))
            report = run_send(store, config, now + timedelta(days=day))
            alan = next((d for d in report.digests if d.email == "alan@example.org"), None)
            if day < 2:
                assert alan is not None
                assert alan.status == "failed"
                assert "550" in (alan.error or "")
                assert ("subscriber is now bouncing" in (alan.error or "")) == (day == 1)
            assert statuses(report)["ada@example.org"] == "sent"
        server.handler.wait_for(3)
    bounced = store.subscriber("alan@example.org")
    assert bounced is not None
    assert (bounced.status, bounced.bounces) == ("bouncing", 2)
    assert alan is None
    assert store.subscriber("ada@example.org").bounces == 0  # type: ignore[union-attr]
    assert {r.rcpt_tos[0] for r in server.handler.received} == {"ada@example.org"}


def test_a_connection_dropped_mid_data_is_retried(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(DropMidData(times=1)) as server:
        report = run_send(subscribed, outbox_config(tmp_path, server.port), now)
        server.handler.wait_for(3)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")


def test_a_server_that_is_down_leaves_every_digest_queued(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    port = down_port()
    report = run_send(subscribed, outbox_config(tmp_path, port), now)
    assert report.error is not None
    assert f"127.0.0.1:{port}" in report.error
    assert "\n" not in report.error
    assert [r.status for r in digest_rows(subscribed)] == ["queued"] * 3
    with serve(Sink()) as good:
        later = run_send(subscribed, outbox_config(tmp_path, good.port), now + timedelta(minutes=1))
        good.handler.wait_for(3)
    assert statuses(later) == dict.fromkeys(PEOPLE, "sent")


def test_a_subscriber_who_left_before_delivery_gets_nothing(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    down = outbox_config(tmp_path, down_port())
    run_send(subscribed, down, now)
    lifecycle.remove(subscribed, "ada@example.org", now)
    with serve(Sink()) as good:
        report = run_send(subscribed, outbox_config(tmp_path, good.port), now)
        good.handler.wait_for(2)
    assert statuses(report)["ada@example.org"] == "failed"
    assert "ada@example.org" not in {r.rcpt_tos[0] for r in good.handler.received}


@pytest.mark.parametrize(("day", "due"), [(0, True), (1, False)])
def test_weekly_subscribers_get_their_digest_on_the_weekly_day(
    store: Store,
    seed_files: list[Path],
    sink: Server,
    tmp_path: Path,
    now: datetime,
    day: int,
    due: bool,
) -> None:
    monday = now - timedelta(days=now.weekday()) + timedelta(days=day)
    ingest_files(store, seed_files, monday)
    lifecycle.add(
        store, subscribers.Wanted("w@example.org", "model", frequency="weekly"), "operator", monday
    )
    report = run_send(store, outbox_config(tmp_path, sink.port, weekly_day="mon"), monday)
    assert statuses(report) == ({"w@example.org": "sent"} if due else {})


def test_the_maildir_backend_files_each_digest_atomically(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    config = outbox_config(tmp_path)
    report = run_send(subscribed, config, now)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")
    files = list((tmp_path / "mail" / "new").iterdir())
    assert len(files) == 3
    assert not list((tmp_path / "mail" / "tmp").iterdir())
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(str(m["To"]) for m in parsed) == sorted(PEOPLE)


def test_empty_digests_on_different_days_are_different_messages(
    store: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    lifecycle.add(store, subscribers.Wanted("ada@example.org", "diffusion"), "operator", now)
    config = outbox_config(tmp_path, sink.port, send_empty=True)
    first = run_send(store, config, now)
    second = run_send(store, config, now + timedelta(days=1))
    assert [statuses(first), statuses(second)] == [{"ada@example.org": "sent"}] * 2
    assert first.digests[0].message_id != second.digests[0].message_id
    sink.handler.wait_for(2)


def test_preview_prints_the_digest_without_recording_it(
    run_cli: RunCli, seed_files: list[Path], config_file: Path
) -> None:
    run_cli("ingest", *map(str, seed_files))
    run_cli("subscribers", "add", "ada@example.org", "--filter", "diffusion -video")
    html = run_cli("preview", "ada@example.org")
    text = run_cli("preview", "ada@example.org", "--text")
    assert html.exit_code == text.exit_code == 0
    assert html.stdout.lstrip().lower().startswith("<!doctype html")
    assert "diffusion -video" in html.stdout
    assert "<" not in text.stdout.split("\n", 1)[0]
    assert "diffusion" in text.stdout.lower()
    store = Store(config_file.parent / "var" / "digest.db")
    assert store.count("digests") == 0
    store.close()


def mailed_parts(tmp_path: Path) -> list[str]:
    """The text and HTML parts of every message in the test Maildir."""
    found = []
    for path in (tmp_path / "mail" / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        for kind in ("plain", "html"):
            part = message.get_body(preferencelist=(kind,))
            assert part is not None
            found.append(str(part.get_content()))
    return found


def test_a_first_digest_after_rejected_dumps_does_not_mention_them(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    for n in range(5):
        bad = tmp_path / f"bad-{n}.txt"
        bad.write_text(f"Lonely Title {n}\n")
        assert ingest_files(subscribed, [bad], now).rejected == 1
    assert run_send(subscribed, outbox_config(tmp_path), now).count("sent") == len(PEOPLE)
    parts = mailed_parts(tmp_path)
    assert len(parts) == 2 * len(PEOPLE)
    for part in parts:
        assert "Papers as of the newest listing, ingested 2026-11-24 07:00 UTC." in part
        assert "reject" not in part.lower()
        assert "bad-" not in part


def test_a_stale_store_says_no_new_listing_has_arrived_since_the_last(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    later = now + timedelta(days=2)
    report = run_send(subscribed, outbox_config(tmp_path, send_empty=True), later)
    assert report.count("sent") == len(PEOPLE)
    for part in mailed_parts(tmp_path):
        assert "No new listing has arrived since 2026-11-24 07:00 UTC." in part
        assert "Papers as of" not in part


class StopAfter(Renderer):
    """The real renderer, which sets ``stop`` (as SIGTERM does) after ``count`` digests."""

    def __init__(self, config: Config, stop: threading.Event, count: int) -> None:
        super().__init__(config)
        self.stop, self.left = stop, count

    def fit(self, content: DigestContent) -> tuple[DigestContent, bytes]:
        fitted = super().fit(content)
        self.left -= 1
        if self.left == 0:
            self.stop.set()
        return fitted


def test_a_stop_while_building_keeps_what_was_built_and_leaves_the_rest_due(
    subscribed: Store, tmp_path: Path, now: datetime, sink: Server
) -> None:
    config = outbox_config(tmp_path, sink.port)
    for i in range(7):
        lifecycle.add(subscribed, subscribers.Wanted(f"r{i}@example.org", "model"), "operator", now)
    stop = threading.Event()
    stopped = run_send(subscribed, config, now, renderer=StopAfter(config, stop, 3), stop=stop)
    assert [d.status for d in stopped.digests] == ["queued"] * 3
    assert sink.handler.count == 0, "nothing is sent once asked to stop"
    resumed = run_send(subscribed, config, now)
    assert resumed.count("sent") == 10
    assert len({m.message_id for m in sink.handler.wait_for(10)}) == 10


# -- what real relays do: about the relay, not the subscribers (FIELD_NOTES: Postfix 3.7) ---


def bounces(store: Store) -> dict[str, tuple[str, int]]:
    return {s.email: (s.status, s.bounces) for s in store.subscribers()}


def untouched(store: Store) -> bool:
    """Every subscriber still active with no bounce counted."""
    return all(state == ("active", 0) for state in bounces(store).values())


def later_run_delivers_them(store: Store, tmp_path: Path, when: datetime) -> None:
    """A later run on a relay that behaves sends every held digest, with its Message-ID."""
    held = {r.message_id for r in digest_rows(store) if r.status != "sent"}
    assert held
    with serve(Sink()) as good:
        report = run_send(store, outbox_config(tmp_path, good.port), when)
        received = good.handler.wait_for(len(held))
    assert {r.message_id for r in received} >= held
    assert all(r.status == "sent" and r.attempts == 1 for r in digest_rows(store))
    assert report.error is None
    assert untouched(store)


def test_a_paced_run_outlasts_the_relays_idle_timeout(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    # A slot every 0.5 s; the relay closes a connection idle for 0.2 s.
    with serve(Sink(idle_timeout=0.2)) as server:
        config = outbox_config(tmp_path, server.port, {"concurrency": 1, "rate_per_second": 2})
        report = run_send(subscribed, config, now)
        server.handler.wait_for(3)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")
    assert [r.attempts for r in digest_rows(subscribed)] == [1, 1, 1]
    assert server.handler.idle_closed >= 2


def test_too_many_connections_costs_no_attempt(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(BusyGreeting(limit=1)) as server:
        report = run_send(subscribed, outbox_config(tmp_path, server.port, {"concurrency": 4}), now)
        server.handler.wait_for(3)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")
    assert [r.attempts for r in digest_rows(subscribed)] == [1, 1, 1]
    assert server.handler.refused >= 1


def test_a_relay_that_refuses_the_greeting_keeps_everything_queued_until_it_takes_mail(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(BusyGreeting(times=2)) as server:
        config = outbox_config(tmp_path, server.port)
        for minutes in (0, 5):
            report = run_send(subscribed, config, now + timedelta(minutes=minutes))
            assert report.error is not None
            assert BusyGreeting.REPLY in report.error
            assert [(r.status, r.attempts) for r in digest_rows(subscribed)] == [("queued", 0)] * 3
            assert untouched(subscribed)
        ids = {r.message_id for r in digest_rows(subscribed)}
        report = run_send(subscribed, config, now + timedelta(minutes=10))
        received = server.handler.wait_for(3)
    assert statuses(report) == dict.fromkeys(PEOPLE, "sent")
    assert {r.message_id for r in received} == ids
    assert untouched(subscribed)


@pytest.mark.parametrize(
    "reply",
    ["452 4.3.1 Insufficient system storage", "450 4.7.1 Error: too much mail from 127.0.0.1"],
)
def test_a_relay_that_takes_no_mail_for_now_stops_the_run_without_using_attempts(
    subscribed: Store, tmp_path: Path, now: datetime, reply: str
) -> None:
    with serve(RefuseMail(reply)) as server:
        report = run_send(subscribed, outbox_config(tmp_path, server.port, {"concurrency": 1}), now)
    assert report.error is not None
    assert reply in report.error
    assert "\n" not in report.error
    rows = digest_rows(subscribed)
    assert all(r.attempts == 0 and r.status in ("queued", "deferred") for r in rows)
    assert [r.error for r in rows if r.status == "deferred"] == [report.error.split(" (")[0]]
    assert untouched(subscribed)
    later_run_delivers_them(subscribed, tmp_path, now + timedelta(minutes=5))


def test_a_relay_size_limit_is_never_a_bounce(
    store: Store, seed_files: list[Path], tmp_path: Path, now: datetime
) -> None:
    """Three runs against a relay that refuses every message as too big (552 at MAIL FROM)."""
    for email_address in ("ada@example.org", "alan@example.org"):
        lifecycle.add(store, subscribers.Wanted(email_address, "model"), "operator", now)
    reply = "552 5.3.4 Message size exceeds fixed limit"
    with serve(RefuseMail(reply)) as server:
        config = outbox_config(tmp_path, server.port)
        for day, files in enumerate([seed_files[:2], seed_files[2:4], seed_files[4:]]):
            ingest_files(store, files, now + timedelta(days=day))
            report = run_send(store, config, now + timedelta(days=day))
            assert report.error is None
            assert set(statuses(report).values()) == {"deferred"}
            assert all(d.error == f"too big for the relay: {reply}" for d in report.digests)
    rows = digest_rows(store)
    assert len(rows) == 6
    assert all((r.status, r.attempts) == ("deferred", 0) for r in rows)
    assert untouched(store)
    later_run_delivers_them(store, tmp_path, now + timedelta(days=2, hours=1))


def test_a_digest_over_the_advertised_size_is_not_offered_and_not_a_bounce(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(SizeLimit(1000)) as server:
        report = run_send(subscribed, outbox_config(tmp_path, server.port), now)
        assert server.handler.mails == 0
    assert statuses(report) == dict.fromkeys(PEOPLE, "deferred")
    assert all("takes (SIZE)" in (d.error or "") for d in report.digests)
    assert all((r.status, r.attempts) == ("deferred", 0) for r in digest_rows(subscribed))
    assert untouched(subscribed)
    later_run_delivers_them(subscribed, tmp_path, now + timedelta(minutes=5))


def test_the_same_refusal_for_every_recipient_is_the_relay_not_a_bounce(
    subscribed: Store, tmp_path: Path, now: datetime
) -> None:
    with serve(RejectAll("550 5.7.1 Unable to relay")) as server:
        config = outbox_config(tmp_path, server.port)
        for day in range(3):
            report = run_send(subscribed, config, now + timedelta(days=day))
            assert report.error is not None
            assert "refused 3 different recipients in a row" in report.error
            assert "550 5.7.1 Unable to relay" in report.error
        assert server.handler.count == 0
    rows = digest_rows(subscribed)
    assert all((r.status, r.attempts) == ("deferred", 0) for r in rows)
    assert all("Unable to relay" in r.error for r in rows)
    assert untouched(subscribed)
    later_run_delivers_them(subscribed, tmp_path, now + timedelta(days=2, hours=1))


def test_refusals_among_accepted_recipients_still_count_as_bounces(
    seeded_store: Store, tmp_path: Path, now: datetime
) -> None:
    people = ["a@example.org", "gone1@example.org", "gone2@example.org", "b@example.org"]
    for email_address in people:
        lifecycle.add(seeded_store, subscribers.Wanted(email_address, "model"), "operator", now)
    handler = RejectGone()
    with serve(handler) as server:
        report = run_send(
            seeded_store, outbox_config(tmp_path, server.port, {"concurrency": 1}), now
        )
        server.handler.wait_for(2)
    assert report.error is None
    assert statuses(report) == {
        "a@example.org": "sent",
        "gone1@example.org": "failed",
        "gone2@example.org": "failed",
        "b@example.org": "sent",
    }
    assert {e: b for e, (_, b) in bounces(seeded_store).items()} == {
        "a@example.org": 0,
        "gone1@example.org": 1,
        "gone2@example.org": 1,
        "b@example.org": 0,
    }


class RejectGone(Sink):
    """550 5.1.1 for every address starting with "gone": dead mailboxes among live ones."""

    async def intercept(self, server: Any, command: str) -> bool:
        return False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("gone"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


def test_a_stop_while_a_relay_stalls_cancels_within_the_grace_and_keeps_the_digest(
    subscribed: Store, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "STOP_GRACE_SECONDS", 1.0)  # 5 s in service; shorter here
    with serve(Stall(times=None)) as stalling:
        config = config_module.from_mapping(
            {
                "delivery": {"backend": "smtp", "maildir": "mail"},
                "smtp": {"port": stalling.port, "timeout_seconds": 60.0},
            },
            source=tmp_path / "config.toml",
        )
        stop = threading.Event()
        database = subscribed.path

        def send_on_its_own_connection() -> None:
            with closing(Store(database)) as own:
                run_send(own, config, now, stop=stop, only="ada@example.org")

        sending = threading.Thread(target=send_on_its_own_connection)
        sending.start()
        deadline = time.monotonic() + 20
        while digest_statuses(database) != ["sending"]:
            assert time.monotonic() < deadline, digest_statuses(database)
            time.sleep(0.05)
        stopped_at = time.monotonic()
        stop.set()
        sending.join(timeout=delivery.STOP_GRACE_SECONDS + 5)
        assert not sending.is_alive(), "the stalled send outlived the grace"
        assert time.monotonic() - stopped_at < delivery.STOP_GRACE_SECONDS + 5
    assert digest_statuses(database) == ["queued"], "given back for the next run"


def digest_statuses(database: Path) -> list[str]:
    with closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM digests ORDER BY id")]


def test_a_queued_message_waits_in_its_own_table_and_is_deleted_once_sent(
    store: Store, now: datetime
) -> None:
    ada = lifecycle.add(store, subscribers.Wanted("ada@example.org", "x"), "operator", now)
    stamp = iso(now)
    digest = store.record_digest(ada.id, "<digest.1.0@example.org>", 0, [], 0, b"bytes", stamp)
    assert digest is not None
    assert store.count("messages") == 1
    assert store.message(digest) == b"bytes"
    assert store.claim(digest, owner=1)
    store.mark_sent(digest, ada.id, stamp)
    assert store.count("messages") == 0
    assert [(r.status, r.has_message) for r in store.outbox_rows()] == [("sent", False)]


def test_a_message_is_stored_zstandard_packed_and_one_stored_zlib_packed_still_reads(
    store: Store, now: datetime
) -> None:
    """Rows recorded before issue 16 hold zlib; newer ones Zstandard: both read back whole."""
    ada = lifecycle.add(store, subscribers.Wanted("ada@example.org", "x"), "operator", now)
    data, stamp = b"Subject: a digest\r\n\r\n" + b"the same line, again\r\n" * 500, iso(now)
    new = store.record_digest(ada.id, "<digest.1.0@example.org>", 0, [], 0, data, stamp)
    old = store.record_digest(
        ada.id, "<digest.1.1@example.org>", 0, [], 0, Packed(zlib.compress(data, 1)), stamp
    )
    assert new is not None
    assert old is not None
    stored = store.db.execute("SELECT data FROM messages WHERE digest_id = ?", [new]).fetchone()
    assert stored[0].startswith(b"\x28\xb5\x2f\xfd")
    assert len(stored[0]) < len(data) / 10
    assert store.message(new) == store.message(old) == data


def test_a_message_queued_before_m007_moves_to_its_table_and_is_sent_unchanged(
    tmp_path: Path, now: datetime
) -> None:
    """A database built by m001..m006 with a queued digest (its bytes in ``digests.message``,
    zlib level 6) sends the same bytes once migrated."""
    path, data = tmp_path / "digest.db", b"Subject: queued before m007\r\n\r\nthe same bytes\r\n"
    old = Database(path)
    migrations.apply(old, stop_before="m007_messages")
    stamp = iso(now - timedelta(hours=1))
    old["subscribers"].insert(
        {"email": "ada@example.org", "filter": "x", "secret": "s", "created_at": stamp}
        | {"updated_at": stamp}
    )
    old["digests"].insert(
        {"subscriber_id": 1, "message_id": "<digest.1.0@example.org>", "max_seq": 0}
        | {"papers": 0, "created_at": stamp, "message": zlib.compress(data, 6)}
    )
    old.close()
    with closing(Store(path)) as migrated:
        assert migrated.count("messages") == 1
        assert "message" not in migrated.db["digests"].columns_dict
        report = run_send(migrated, outbox_config(tmp_path), now)
        assert statuses(report) == {"ada@example.org": "sent"}
        assert migrated.count("messages") == 0
    [filed] = (tmp_path / "mail" / "new").iterdir()
    assert filed.read_bytes().replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n")


def test_deliveries_recorded_before_m009_keep_their_key_and_their_digest_and_lose_the_rest(
    tmp_path: Path, now: datetime
) -> None:
    """m009 rebuilds deliveries without ``rank`` and without the index on ``digest_id``: the
    rows are kept, a paper still cannot go in a second digest, the delivery still names
    its digest, and deleting the subscriber still deletes them."""
    path, stamp = tmp_path / "digest.db", iso(now - timedelta(days=1))
    old = Database(path)
    migrations.apply(old, stop_before="m009_lean_deliveries")
    old["dumps"].insert({"sha256": "0" * 64, "file_name": "d.txt", "ingested_at": stamp})
    for seq in (1, 2, 3):
        old["papers"].insert(
            {"seq": seq, "id": f"p{seq}", "title": f"Paper {seq}", "abstract": "a"}
            | {"first_seen": stamp, "first_dump": 1}
        )
    old["subscribers"].insert(
        {"email": "ada@example.org", "filter": "x", "secret": "s", "created_at": stamp}
        | {"updated_at": stamp}
    )
    old["digests"].insert(
        {"subscriber_id": 1, "message_id": "<digest.1.0@example.org>", "max_seq": 2}
        | {"papers": 2, "created_at": stamp, "status": "sent"}
    )
    old["deliveries"].insert_all(
        {"subscriber_id": 1, "paper_seq": seq, "digest_id": 1, "rank": rank}
        for rank, seq in ((1, 2), (2, 1))
    )
    old.close()
    with closing(Store(path)) as migrated:
        rows = migrated.db.execute("SELECT * FROM deliveries").fetchall()
        assert rows == [(1, 1, 1), (1, 2, 1)]
        indexes = migrated.db.execute("PRAGMA index_list('deliveries')").fetchall()
        assert [index[3] for index in indexes] == ["pk"]
        assert (
            migrated.record_digest(1, "<digest.2.0@example.org>", 3, [3, 2], 0, b"", stamp) is None
        )
        assert migrated.delivery(1, 2) == {
            "digest_id": 1,
            "created_at": stamp,
            "status": "sent",
            "sent_at": None,
        }
        assert migrated.record_digest(1, "<digest.2.0@example.org>", 3, [3], 0, b"", stamp) == 2
        migrated.delete_subscriber(1)
        assert (migrated.count("deliveries"), migrated.count("digests")) == (0, 0)
