"""The queue, seen and retried by the operator: through the CLI and real aiosmtpd relays."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest import lifecycle, queue, sending, subscribers
from digest.mailer import transport_for
from digest.store import Store

from .conftest import SEED_FILES, Result, RunCli
from .smtp_servers import Refuse421, Reject550, Sink, down_port, serve
from .test_outbox import PEOPLE, outbox_config

EX_TEMPFAIL = 75


def smtp_config(tmp_path: Path, port: int, *, retries: int = 0, base: float = 3600.0) -> Path:
    """The CLI's config, sending through 127.0.0.1:``port`` (a new file per relay)."""
    path = tmp_path / f"smtp-{port}.toml"
    path.write_text(
        '[storage]\ndatabase = "var/digest.db"\n[inbox]\ndir = "inbox"\n'
        f'[delivery]\nbackend = "smtp"\nmaildir = "mail"\nretries = {retries}\n'
        f"retry_base_seconds = {base}\nbounce_limit = 3\n"
        f"[smtp]\nport = {port}\ntimeout_seconds = 5.0\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def people(run_cli: RunCli) -> RunCli:
    """The CLI's database with the seed dumps and three active subscribers."""
    assert run_cli("ingest", *map(str, SEED_FILES)).exit_code == 0
    for address, query in PEOPLE.items():
        assert run_cli("subscribers", "add", address, "--filter", query).exit_code == 0
    return run_cli


def listed(run_cli: RunCli, config: Path, *statuses: str) -> dict[str, Any]:
    """``digest outbox list --json`` by address."""
    options = [arg for status in statuses for arg in ("--status", status)]
    result = run_cli("outbox", "list", "--json", *options, config=config)
    assert result.exit_code == 0, result.stderr
    return {row["email"]: row for row in result.json()}


def send(run_cli: RunCli, config: Path) -> Result:
    return run_cli("send", config=config)


def test_with_the_relay_down_status_shows_the_queue_and_send_exits_75(
    people: RunCli, tmp_path: Path
) -> None:
    down = smtp_config(tmp_path, down_port())
    first = send(people, down)
    assert first.exit_code == EX_TEMPFAIL
    assert "error: " in first.stderr
    assert "waiting in the outbox: 3 queued, 0 deferred" in first.stdout
    later = send(people, down)
    assert later.exit_code == EX_TEMPFAIL
    assert "0 sent, 0 deferred, 0 failed, 0 skipped; 3 subscribers not due yet" in later.stdout
    assert "waiting in the outbox: 3 queued, 0 deferred" in later.stdout
    info = people("status", "--json", config=down).json()
    assert info["outbox"] == {
        "queued": 3,
        "sending": 0,
        "deferred": 0,
        "next_attempt_at": None,
        "failed_last_7_days": 0,
    }
    assert info["bouncing"] == 0
    run = info["last_delivery"]
    assert run["job"] == "send"
    assert run["finished_at"] is not None
    assert run["counts"] == {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0}
    assert "waiting: 3 queued" in run["summary"]
    text = people("status", config=down).stdout
    assert "outbox       3 queued, 0 deferred, 0 failed in the last 7 days" in text
    waiting = listed(people, down, "queued")
    with serve(Sink()) as relay:
        back = send(people, smtp_config(tmp_path, relay.port))
        received = relay.handler.wait_for(3)
    assert back.exit_code == 0, back.stdout + back.stderr
    assert "waiting in the outbox" not in back.stdout
    assert {r.rcpt_tos[0]: r.message_id for r in received} == {
        email: row["message_id"] for email, row in waiting.items()
    }


def test_deferred_digests_are_retried_now_with_the_same_message_id(
    people: RunCli, tmp_path: Path
) -> None:
    with serve(Refuse421(on="RCPT")) as busy:
        refused = send(people, smtp_config(tmp_path, busy.port))
    assert refused.exit_code == EX_TEMPFAIL
    deferred = listed(people, smtp_config(tmp_path, busy.port), "deferred")
    assert set(deferred) == set(PEOPLE)
    assert all(row["next_attempt_at"] and "421" in row["error"] for row in deferred.values())
    with serve(Sink()) as relay:
        config = smtp_config(tmp_path, relay.port)
        too_soon = send(people, config)
        assert too_soon.exit_code == EX_TEMPFAIL
        assert "waiting in the outbox: 0 queued, 3 deferred (next attempt " in too_soon.stdout
        assert relay.handler.count == 0
        retried = people("outbox", "retry", config=config)
        assert retried.exit_code == 0
        assert "3 due now, 0 requeued, 0 left" in retried.stdout
        delivered = send(people, config)
        received = relay.handler.wait_for(3)
    assert delivered.exit_code == 0
    assert {r.rcpt_tos[0]: r.message_id for r in received} == {
        email: row["message_id"] for email, row in deferred.items()
    }
    assert people("status", "--json", config=config).json()["outbox"]["deferred"] == 0


def test_a_failed_digest_is_retried_with_failed_once_the_address_is_fixed(
    people: RunCli, tmp_path: Path
) -> None:
    with serve(Reject550("alan@example.org")) as strict:
        config = smtp_config(tmp_path, strict.port)
        bounced = send(people, config)
        strict.handler.wait_for(2)
    assert bounced.exit_code == 1
    failed = listed(people, config, "failed")["alan@example.org"]
    assert failed["retryable"] is True
    assert "550" in failed["error"]
    assert people("status", "--json", config=config).json()["outbox"]["failed_last_7_days"] == 1
    plain = people("outbox", "retry", "--json", config=config).json()
    assert plain == {"due": [], "requeued": [], "left": []}
    with serve(Sink()) as relay:
        config = smtp_config(tmp_path, relay.port)
        again = people("outbox", "retry", "--failed", "--only", "alan@example.org", config=config)
        assert "1 requeued" in again.stdout
        assert f"requeued  alan@example.org  {failed['message_id']}" in again.stdout
        delivered = send(people, config)
        received = relay.handler.wait_for(1)
    assert delivered.exit_code == 0
    assert [(r.rcpt_tos[0], r.message_id) for r in received] == [
        ("alan@example.org", failed["message_id"])
    ]
    assert listed(people, config)["alan@example.org"]["status"] == "sent"


def test_retry_leaves_the_digests_of_subscribers_no_longer_active(
    people: RunCli, tmp_path: Path
) -> None:
    with serve(Reject550("alan@example.org")) as strict:
        config = smtp_config(tmp_path, strict.port)
        send(people, config)
        strict.handler.wait_for(2)
    people("subscribers", "set", "alan@example.org", "--status", "paused", config=config)
    result = people("outbox", "retry", "--failed", config=config)
    assert result.exit_code == 0
    assert "0 due now, 0 requeued, 1 left" in result.stdout
    assert "(failed: subscriber is paused)" in result.stderr
    assert listed(people, config)["alan@example.org"]["status"] == "failed"


def test_retry_since_takes_only_the_recent_failures_and_never_a_digest_without_message(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    from digest.ingest import ingest_files

    for address in ("ada@example.org", "alan@example.org"):
        lifecycle.add(store, subscribers.Wanted(address, "model"), "operator", now)
    with serve(Reject550("alan@example.org")) as strict:
        config = outbox_config(tmp_path, strict.port)
        for day, files in enumerate([SEED_FILES[:2], SEED_FILES[2:4]]):
            moment = now + timedelta(days=day)
            ingest_files(store, files, moment)
            transport = transport_for(config.delivery, config.smtp)
            sending.send(store, config, transport, lambda moment=moment: moment)  # type: ignore[misc]
        strict.handler.wait_for(2)
    alan = store.subscriber("alan@example.org")
    assert alan is not None
    assert alan.status == "bouncing"
    alan = lifecycle.change_status(store, alan, "resume", "operator", now)  # address fixed
    with store.write():
        store.record_failed_digest(
            alan.id, "<built.not@x>", 0, "cannot build", "2026-11-25T08:00:00Z"
        )
    later = now + timedelta(days=1, hours=2)
    report = queue.retry(store, later, failed=True, since=now + timedelta(hours=12))
    assert [row.created_at for row in report.requeued] == ["2026-11-25T07:00:00Z"]
    assert [(row.message_id, why[:10]) for row, why in report.left] == [
        ("<built.not@x>", "no message")
    ]


def test_run_once_uses_the_exit_statuses_of_send(people: RunCli, tmp_path: Path) -> None:
    down = smtp_config(tmp_path, down_port())
    assert people("run", "--once", config=down).exit_code == EX_TEMPFAIL
    with serve(Sink()) as relay:
        assert people("run", "--once", config=smtp_config(tmp_path, relay.port)).exit_code == 0
        relay.handler.wait_for(3)


def test_status_keeps_its_keys_and_says_when_nothing_was_ever_sent(people: RunCli) -> None:
    info = people("status", "--json").json()
    assert {"database", "database_bytes", "papers", "dumps", "rejections", "subscribers"} <= set(
        info
    )
    assert info["last_delivery"] is None
    assert info["outbox"]["queued"] == 0
    assert "last send    never" in people("status").stdout


def test_a_delivery_run_with_another_summary_has_no_counts(store: Store, now: datetime) -> None:
    store.finish_run(store.start_run("deliver", "2026-11-24T07:00:00Z", "x"), "y", "ok")
    assert queue.status(store, now)["last_delivery"]["counts"] is None
