"""``digest run --once`` (what ``make run`` and the timer do): ingest the inbox, deliver what
is due, write the feeds, prune; end to end on the seed dumps, with mail to a Maildir."""

import mailbox
import shutil
from contextlib import closing
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import feedparser
import pytest

from digest import backtest, declared, pipeline
from digest.config import Config
from digest.store import Store

from .conftest import NOW, SEED_FILES, make_config

PEOPLE = {"ada@example.org": "diffusion -video", "grace@example.org": '"language model" OR agent*'}
TOPIC = {"name": "Diffusion models", "filter": "diffusion", "slug": "diffusion"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The example config's shape, in tmp_path; files are taken as soon as they are seen."""
    return make_config(
        tmp_path,
        storage={"database": "var/digest.db"},
        inbox={"dir": "var/inbox", "settle_seconds": 0},
        delivery={"backend": "maildir", "maildir": "var/mail"},
        feeds={"dir": "var/feeds"},
        subscribers=[{"email": email, "filter": query} for email, query in PEOPLE.items()],
        topics=[TOPIC],
    )


def run_once(config: Config, moment: datetime) -> pipeline.CycleReport:
    """``digest run --once`` at ``moment``: sync the declared subscribers, then the cycle."""
    with closing(Store(config.storage.database)) as store:
        declared.sync_declared(store, config, moment)
    return pipeline.run_once(config, lambda: moment)


def drop_seeds(inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for path in SEED_FILES:
        shutil.copy(path, inbox / path.name)


def messages(maildir: Path) -> dict[str, EmailMessage]:
    """Every message in the Maildir by recipient (each must have one)."""
    parser = BytesParser(policy=policy.default)
    found = [parser.parsebytes(bytes(m)) for m in mailbox.Maildir(maildir, create=False)]
    by_recipient = {str(m["To"].addresses[0].addr_spec): m for m in found}
    assert len(by_recipient) == len(found), "two messages to one recipient"
    return by_recipient  # type: ignore[return-value]


def test_one_cycle_ingests_the_dropped_dumps_mails_each_subscriber_and_writes_the_feeds(
    config: Config,
) -> None:
    drop_seeds(config.inbox.dir)
    report = run_once(config, NOW)

    assert report.ingest is not None
    assert report.send is not None
    assert [(Path(f.path).name, f.status) for f in report.ingest.files] == [
        (path.name, "ingested") for path in SEED_FILES
    ]
    assert report.ingest.new_papers == 689
    assert sorted(d.email for d in report.send.digests if d.status == "sent") == sorted(PEOPLE)
    assert not report.failed
    assert report.exit_status == 0
    assert sorted(p.name for p in (config.inbox.dir / "processed").iterdir()) == [
        p.name for p in SEED_FILES
    ]

    mail = messages(config.delivery.maildir)
    assert sorted(mail) == sorted(PEOPLE)
    with closing(Store(config.storage.database)) as store:
        for email, query in PEOPLE.items():
            message = mail[email]
            best = backtest.backtest(store, query)[: config.digest.max_papers]
            assert len(best) == 25, f"the seeds hold too little for {query}"
            assert message["Subject"].startswith("25 new papers: ")
            assert message["Subject"].endswith(" — Nov 24")
            text = message.get_body(("plain",))
            assert text is not None
            body = text.get_content()
            for found in best:
                assert found.paper.title in body

    public = feedparser.parse(config.feeds.dir / "all.atom")
    assert public.bozo == 0
    assert len(public.entries) == config.feeds.max_entries
    topic = feedparser.parse(config.feeds.dir / "topics" / "diffusion.rss")
    assert topic.bozo == 0
    assert topic.entries
    assert all("diffusion" in (e.title + e.summary).lower() for e in topic.entries)


def test_a_second_cycle_with_nothing_new_sends_nothing_then_or_the_next_day(config: Config) -> None:
    drop_seeds(config.inbox.dir)
    run_once(config, NOW)
    sent = sorted(p.name for p in (config.delivery.maildir / "new").iterdir())

    soon = run_once(config, NOW + timedelta(minutes=5))
    assert soon.ingest is not None
    assert soon.send is not None
    assert soon.ingest.files == []
    assert soon.send.digests == []
    assert soon.send.not_due == len(PEOPLE)

    next_day = run_once(config, NOW + timedelta(days=1))
    assert next_day.send is not None
    assert {(d.email, d.status, d.error) for d in next_day.send.digests} == {
        (email, "skipped", "no new matching papers") for email in PEOPLE
    }
    assert not next_day.failed
    assert sorted(p.name for p in (config.delivery.maildir / "new").iterdir()) == sent
