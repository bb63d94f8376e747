"""Retention: each rule removes what is old, keeps what is recent, and never a delivery."""

import os
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from digest import config as config_module
from digest import lifecycle, pipeline, retention, sending, subscribers
from digest.config import Config
from digest.ingest import ingest_files
from digest.mailer import transport_for
from digest.scheduler import Service
from digest.store import Store, iso

from .conftest import SEED_FILES, RunCli
from .smtp_servers import Reject550, serve
from .test_outbox import outbox_config

DAY = timedelta(days=1)


def rules(report: retention.PruneReport) -> dict[str, int]:
    """Rows per rule, by the rule's first word."""
    return {rule.split()[0]: pruned.rows for rule, pruned in report.rules}


def test_job_runs_older_than_keep_days_go_but_the_newest_of_each_job_stays(
    store: Store, now: datetime
) -> None:
    for job, age in [("deliver", 100), ("deliver", 95), ("deliver", 10), ("prune", 200)]:
        started = iso(now - age * DAY)
        store.finish_run(store.start_run(job, started, started), started, "ok")
    report = retention.prune(store, Config(), now)
    assert rules(report)["job"] == 2
    assert store.count("job_runs") == 2
    assert store.last_scheduled("deliver") == iso(now - 10 * DAY)
    assert store.last_scheduled("prune") == iso(now - 200 * DAY)


def test_rejection_records_older_than_keep_days_go(store: Store, now: datetime) -> None:
    store.add_rejection("old.txt", "a" * 64, "bad", now - 91 * DAY)
    store.add_rejection("new.txt", "b" * 64, "bad", now - 89 * DAY)
    retention.prune(store, Config(), now)
    assert store.rejections_summary() == (1, iso(now - 89 * DAY))  # new.txt's


def test_message_bytes_go_after_sending_and_after_the_retry_window_for_failures(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    for address in ("ada@example.org", "alan@example.org"):
        lifecycle.add(store, subscribers.Wanted(address, "model"), "operator", now - 30 * DAY)
    with serve(Reject550("alan@example.org")) as server:
        config = outbox_config(tmp_path, server.port)
        for age, files in [(20, SEED_FILES[:2]), (3, SEED_FILES[2:4])]:
            moment = now - age * DAY
            ingest_files(store, files, moment)
            transport = transport_for(config.delivery, config.smtp)
            sending.send(store, config, transport, lambda moment=moment: moment)  # type: ignore[misc]
        server.handler.wait_for(2)
    deliveries = store.count("deliveries")
    with store.write():  # a sent digest from before bytes were deleted at sending
        store.db.execute(
            "INSERT INTO messages (digest_id, data) "
            "SELECT id, X'00' FROM digests WHERE status = 'sent' AND id = 1"
        )
    dry = retention.prune(store, config, now, dry_run=True)
    assert rules(dry)["message"] == 2
    assert sum(r.has_message for r in store.outbox_rows()) == 3
    retention.prune(store, config, now)
    kept = [(r.status, r.created_at) for r in store.outbox_rows() if r.has_message]
    assert kept == [("failed", iso(now - 3 * DAY))]
    assert store.count("digests") == 4
    assert store.count("deliveries") == deliveries


def test_sign_ups_never_confirmed_go_after_the_confirm_window_and_a_day(
    store: Store, now: datetime
) -> None:
    def sign_up(address: str, hours_ago: int) -> None:
        wanted = subscribers.Wanted(address, "model")
        lifecycle.request(store, wanted, now - timedelta(hours=hours_ago))

    sign_up("old@example.org", 73)
    sign_up("fresh@example.org", 71)
    sign_up("confirmed@example.org", 200)
    person = store.subscriber("confirmed@example.org")
    assert person is not None
    asked = now - timedelta(hours=199)
    lifecycle.confirm(store, person.id, person.email, "model", asked, now - timedelta(hours=198))
    dry = retention.prune(store, Config(), now, dry_run=True)
    assert rules(dry)["sign-ups"] == 1
    assert store.subscriber("old@example.org") is not None
    report = retention.prune(store, Config(), now)
    assert rules(report)["sign-ups"] == 1
    assert store.subscriber("old@example.org") is None
    assert {s.email: s.status for s in store.subscribers()} == {
        "fresh@example.org": "pending",
        "confirmed@example.org": "active",
    }
    lifecycle.request(store, subscribers.Wanted("old@example.org", "model"), now)
    assert store.subscriber("old@example.org") is not None  # may sign up again


def test_prune_from_the_cli_says_what_it_would_remove(
    run_cli: RunCli, tmp_path: Path, now: datetime
) -> None:
    dry = run_cli("prune", "--dry-run")
    assert dry.exit_code == 0
    assert "would remove      0  job runs older than 90 days" in dry.stdout
    report = run_cli("prune", "--json").json()
    assert report["dry_run"] is False
    assert [set(r) for r in report["rules"]] == [{"rule", "rows", "bytes"}] * 6


def test_run_once_prunes_and_records_a_prune_run(config_file: Path, now: datetime) -> None:
    config = config_module.load(config_file)
    report = pipeline.run_once(config, lambda: now)
    assert report.pruned is not None
    with closing(Store(config.storage.database)) as store:
        # the row itself: no store reader returns a prune run's summary
        runs = store.db.execute("SELECT job, summary FROM job_runs ORDER BY id").fetchall()
    assert runs[-1] == ("prune", "nothing to remove")


@pytest.mark.parametrize("prune_at", ["03:30", "23:05"])
def test_the_service_prunes_daily_at_prune_at(tmp_path: Path, prune_at: str) -> None:
    config = config_module.from_mapping(
        {"storage": {"prune_at": prune_at}, "schedule": {"timezone": "Europe/Berlin"}},
        source=tmp_path / "config.toml",
    )
    service = Service(config, None)
    service._schedule()
    job = service.scheduler.get_job("prune")
    assert job is not None
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert (fields["hour"], fields["minute"]) == tuple(str(int(p)) for p in prune_at.split(":"))
    assert str(job.trigger.timezone) == "Europe/Berlin"


def test_a_bad_prune_time_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config_module.ConfigError, match=r"\[storage\] prune_at: must be"):
        config_module.from_mapping({"storage": {"prune_at": "3:30"}})


def test_prune_gives_the_pages_of_sent_messages_back_so_the_file_shrinks(
    store: Store, now: datetime
) -> None:
    ada = lifecycle.add(store, subscribers.Wanted("ada@example.org", "x"), "operator", now)
    queued = [  # a day's queue, incompressible: 4 MB of pages
        store.record_digest(
            ada.id, f"<digest.1.{n}@example.org>", 0, [], 0, os.urandom(200_000), iso(now)
        )
        for n in range(20)
    ]
    for digest in queued:
        assert digest is not None
        assert store.claim(digest, owner=1)
        store.mark_sent(digest, ada.id, iso(now))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    grown = store.path.stat().st_size
    assert grown > 4_000_000
    dry = retention.prune(store, Config(), now, dry_run=True)
    assert dry.rules[-1][1].bytes > 4_000_000
    assert store.path.stat().st_size == grown
    report = retention.prune(store, Config(), now)
    assert report.rules[-1][1].bytes > 4_000_000
    assert store.path.stat().st_size < grown - 4_000_000
