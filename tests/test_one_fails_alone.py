"""One subscriber can never stop the others.

Rows an older version could store -- an address with a non-ASCII local part, a
filter so long that even an empty digest is over 100 KB -- are put straight into
the database, as that version would have; every other subscriber still gets their
digest, and the two are recorded as failed with the reason, logged once, and not
retried before they are next due.
"""

import email
import email.policy
import logging
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest import lifecycle, outbox, pipeline, sending, subscribers
from digest.config import Config
from digest.due import due_subscribers
from digest.mailer import transport_for
from digest.render import Renderer
from digest.store import Store, iso

from .conftest import SEED_FILES, RunCli
from .smtp_servers import Server
from .test_outbox import outbox_config

FILTERS = ["diffusion", "model", '"language model" OR agent*', "reinforcement", "learning"]
READERS = [f"reader{n:02d}@example.org" for n in range(50)]
JOSE = "josé@example.org"
BIG = "big@example.org"
# ~17,000 characters (1,501 ORed words): each non-ASCII letter is 6 bytes of
# quoted-printable, and the filter is shown twice in each part, so even a digest
# with no papers is over 100 KB.  "diffusion" makes it match, so it is not skipped.
BIG_FILTER = " OR ".join(["diffusion", *(f"éèêë{n}" for n in range(1500))])
NOT_ASCII = "non-ASCII characters before the @ cannot be delivered"
TOO_BIG = "over 100,000 bytes with no papers"


def legacy_row(email_address: str, query: str, now: datetime) -> dict[str, Any]:
    """A subscriber row as an older version stored it, past today's checks."""
    return {
        "email": email_address,
        "name": "",
        "filter": query,
        "frequency": "daily",
        "format": "html",
        "status": "active",
        "source": "cli",
        "secret": secrets.token_urlsafe(24),
        "created_at": iso(now),
        "updated_at": iso(now),
    }


def populate(store: Store, now: datetime) -> None:
    """Fifty subscribers added the normal way, the two legacy rows among them."""
    for n, address in enumerate(READERS):
        if n == 20:
            with store.write():
                store.insert_subscriber(legacy_row(JOSE, "diffusion", now))
        if n == 30:
            with store.write():
                store.insert_subscriber(legacy_row(BIG, BIG_FILTER, now))
        wanted = subscribers.Wanted(address, FILTERS[n % len(FILTERS)])
        lifecycle.add(store, wanted, "operator", now)


@pytest.fixture
def crowd(seeded_store: Store, now: datetime) -> Store:
    populate(seeded_store, now)
    return seeded_store


def run_send(store: Store, config: Config, moment: datetime) -> outbox.SendReport:
    transport = transport_for(config.delivery, config.smtp)
    return sending.send(store, config, transport, lambda: moment)


def by_email(report: outbox.SendReport) -> dict[str, outbox.DigestReport]:
    return {d.email: d for d in report.digests}


def assert_the_two_failed_alone(store: Store, report: outbox.SendReport) -> None:
    found = by_email(report)
    assert {e: found[e].status for e in READERS} == dict.fromkeys(READERS, "sent")
    assert (found[JOSE].status, found[BIG].status) == ("failed", "failed")
    assert NOT_ASCII in (found[JOSE].error or "")
    assert TOO_BIG in (found[BIG].error or "")
    for address, reason in [(JOSE, NOT_ASCII), (BIG, TOO_BIG)]:
        person = store.subscriber(address)
        assert person is not None
        assert (person.status, person.bounces) == ("active", 0)
        row = store.last_digest(person.id)
        assert row is not None
        assert (row["status"], row["papers"]) == ("failed", 0)
        assert not next(r for r in store.outbox_rows() if r.id == row["id"]).has_message
        assert reason in row["error"]
        assert row["message_id"] == found[address].message_id
    assert report.count("failed") == 2
    assert report.error is None


def failure_lines(caplog: pytest.LogCaptureFixture, address: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "digest.outbox" and address in r.getMessage()
    ]


def test_fifty_get_their_digest_over_smtp_and_the_two_bad_rows_fail_alone(
    crowd: Store, sink: Server, tmp_path: Path, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        report = run_send(crowd, outbox_config(tmp_path, sink.port), now)
    assert_the_two_failed_alone(crowd, report)
    received = sink.handler.wait_for(50)
    assert sorted(r.rcpt_tos[0] for r in received) == READERS
    for item in received:
        parsed = email.message_from_bytes(item.data, policy=email.policy.default)
        assert parsed["To"].addresses[0].addr_spec == item.rcpt_tos[0]
        assert parsed.defects == []
    assert len(failure_lines(caplog, JOSE)) == 1
    assert len(failure_lines(caplog, BIG)) == 1


def test_fifty_get_their_digest_in_the_maildir_and_the_two_bad_rows_fail_alone(
    crowd: Store, tmp_path: Path, now: datetime
) -> None:
    config = outbox_config(tmp_path)
    report = run_send(crowd, config, now)
    assert_the_two_failed_alone(crowd, report)
    files = list((config.delivery.maildir / "new").iterdir())
    recipients = sorted(
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["To"]
        .addresses[0]
        .addr_spec
        for f in files
    )
    assert recipients == READERS


def test_a_failed_build_is_not_retried_before_the_subscriber_is_next_due(
    crowd: Store, tmp_path: Path, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    config = outbox_config(tmp_path, send_empty=True)  # tomorrow has no new papers
    run_send(crowd, config, now)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        soon = run_send(crowd, config, now + timedelta(minutes=5))
        assert soon.digests == []
        assert soon.not_due == 52
        assert failure_lines(caplog, JOSE) == []
        tomorrow = by_email(run_send(crowd, config, now + timedelta(hours=21)))
    assert (tomorrow[JOSE].status, tomorrow[BIG].status) == ("failed", "failed")
    assert len(failure_lines(caplog, JOSE)) == 1


def test_a_dry_run_reports_the_failures_and_records_nothing(
    crowd: Store, tmp_path: Path, now: datetime
) -> None:
    config = outbox_config(tmp_path)
    report = sending.send(crowd, config, transport_for(config.delivery, config.smtp), lambda: now,
                         dry_run=True)  # fmt: skip
    found = by_email(report)
    assert (found[JOSE].status, found[BIG].status) == ("failed", "failed")
    assert report.count("dry-run") == 50
    assert crowd.count("digests") == 0


def test_a_queued_digest_that_cannot_go_on_the_wire_fails_without_a_bounce(
    seeded_store: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    """A digest queued for an address an older version let in (here: changed after queueing)."""
    people = [
        lifecycle.add(seeded_store, subscribers.Wanted(address, "diffusion"), "operator", now)
        for address in ("ada@example.org", "bob@example.org", "cy@example.org")
    ]
    config = outbox_config(tmp_path, sink.port)
    due, _ = due_subscribers(seeded_store, config, now)
    built, _, max_seq = outbox.build(seeded_store, config, Renderer(config), due, now)
    outbox.record(seeded_store, built, max_seq, {})
    with seeded_store.write():
        seeded_store.update_subscriber(people[1].id, {"email": JOSE})
    report = run_send(seeded_store, config, now)
    found = by_email(report)
    assert (found["ada@example.org"].status, found["cy@example.org"].status) == ("sent", "sent")
    assert found[JOSE].status == "failed"
    assert NOT_ASCII in (found[JOSE].error or "")
    person = seeded_store.subscriber(JOSE)
    assert person is not None
    assert (person.status, person.bounces) == ("active", 0)
    assert sorted(r.rcpt_tos[0] for r in sink.handler.wait_for(2)) == ["ada@example.org",
                                                                       "cy@example.org"]  # fmt: skip


def smtp_config(tmp_path: Path, port: int) -> Path:
    """The CLI tests' config (same database and folders), delivering over SMTP to ``port``."""
    path = tmp_path / "smtp.toml"
    path.write_text(
        '[storage]\ndatabase = "var/digest.db"\n[inbox]\ndir = "inbox"\n'
        f'[delivery]\nbackend = "smtp"\nmaildir = "mail"\n[smtp]\nport = {port}\n'
        '[feeds]\ndir = "feeds"\n',
        encoding="utf-8",
    )
    return path


def test_an_idn_address_is_stored_and_sent_in_idna_form(
    run_cli: RunCli, tmp_path: Path, sink: Server
) -> None:
    assert run_cli("ingest", *map(str, SEED_FILES)).exit_code == 0
    added = run_cli("subscribers", "add", "ana@bücher.de", "--filter", "diffusion", "--json")
    assert added.exit_code == 0
    assert added.json()["email"] == "ana@xn--bcher-kva.de"
    again = run_cli("subscribers", "add", "ana@xn--bcher-kva.de", "--filter", "model")
    assert again.exit_code == 2
    assert "already subscribed" in again.stderr
    assert run_cli("subscribers", "show", "ANA@BÜCHER.DE").exit_code == 0
    sent = run_cli("send", "--only", "ana@bücher.de", config=smtp_config(tmp_path, sink.port))
    assert sent.exit_code == 0, sent.stderr
    (received,) = sink.handler.wait_for(1)
    assert received.rcpt_tos == ("ana@xn--bcher-kva.de",)
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.de"
    assert parsed.defects == []


def test_a_legacy_row_with_a_unicode_domain_is_found_and_sent_in_idna_form(
    seeded_store: Store, sink: Server, tmp_path: Path, now: datetime
) -> None:
    with seeded_store.write():
        seeded_store.insert_subscriber(legacy_row("ana@bücher.de", "diffusion", now))
    assert subscribers.get(seeded_store, "ana@xn--bcher-kva.de").email == "ana@bücher.de"
    report = run_send(seeded_store, outbox_config(tmp_path, sink.port), now)
    assert [(d.email, d.status) for d in report.digests] == [("ana@bücher.de", "sent")]
    (received,) = sink.handler.wait_for(1)
    assert received.rcpt_tos == ("ana@xn--bcher-kva.de",)
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.de"
    assert parsed.defects == []


# the commands -------------------------------------------------------------------------


def test_add_refuses_a_non_ascii_local_part_with_a_clear_message(run_cli: RunCli) -> None:
    result = run_cli("subscribers", "add", JOSE, "--filter", "diffusion")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {JOSE}: addresses with non-ASCII characters")
    assert "use an ASCII address" in result.stderr
    assert run_cli("subscribers", "list", "--json").json() == []


def test_import_refuses_a_non_ascii_local_part_and_imports_nothing(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(f"email,filter\nada@example.org,diffusion\n{JOSE},agents\n", encoding="utf-8")
    result = run_cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert f"{path}:3: {JOSE}: addresses with non-ASCII characters" in result.stderr
    assert run_cli("subscribers", "list", "--json").json() == []


@pytest.fixture
def legacy_cli(run_cli: RunCli, tmp_path: Path, now: datetime) -> RunCli:
    """The CLI's database with the seeds, two good subscribers and the two legacy rows."""
    assert run_cli("ingest", *map(str, SEED_FILES)).exit_code == 0
    for address in ("ada@example.org", "cy@example.org"):
        assert run_cli("subscribers", "add", address, "--filter", "diffusion").exit_code == 0
    store = Store(tmp_path / "var" / "digest.db")
    try:
        with store.write():
            store.insert_subscriber(legacy_row(JOSE, "diffusion", now))
            store.insert_subscriber(legacy_row(BIG, BIG_FILTER, now))
    finally:
        store.close()
    return run_cli


def test_send_delivers_the_others_lists_each_failure_and_exits_1(
    legacy_cli: RunCli, tmp_path: Path
) -> None:
    result = legacy_cli("send")
    assert result.exit_code == 1
    assert f"failed    {JOSE}: 0 papers ({JOSE}: addresses with non-ASCII" in result.stderr
    assert f"failed    {BIG}: 0 papers (" in result.stderr
    assert TOO_BIG in result.stderr
    assert "2 sent, 0 deferred, 2 failed" in result.stdout
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2


@pytest.mark.parametrize(("address", "reason"), [(JOSE, NOT_ASCII), (BIG, TOO_BIG)])
def test_preview_of_a_subscriber_whose_digest_cannot_be_built_is_a_one_line_error(
    legacy_cli: RunCli, address: str, reason: str
) -> None:
    result = legacy_cli("preview", address)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot build the digest for {address}: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1


def test_run_once_delivers_the_others_and_reports_the_failures(
    legacy_cli: RunCli, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        result = legacy_cli("run", "--once")
    assert result.exit_code == 1
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2
    assert any(f"failed {JOSE}" in r.getMessage() for r in caplog.records)


def test_the_daemons_delivery_job_reports_a_failure_instead_of_raising(
    legacy_cli: RunCli, config_file: Path, tmp_path: Path
) -> None:
    from digest import config as config_module

    config = config_module.load(config_file)
    report = pipeline.deliver(config, lambda: datetime.now(config.schedule.zone))
    assert report.count("sent") == 2
    assert report.count("failed") == 2
    assert report.error is None
