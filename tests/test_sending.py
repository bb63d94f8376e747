"""The whole send: each chunk is delivered as soon as it is recorded, from the bytes in hand."""

import asyncio
import gc
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest import lifecycle, sending, subscribers
from digest.config import Config
from digest.delivery import Deliverer, Feed
from digest.mailer import GROUP, transport_for
from digest.reports import SendReport
from digest.store import Store, iso

from .conftest import make_config
from .smtp_servers import Sink, down_port, serve

PEOPLE = 12
CHUNK = 3


def config_for(tmp_path: Path, port: int) -> Config:
    return make_config(
        tmp_path,
        delivery={"backend": "smtp", "retries": 0},
        smtp={"port": port, "timeout_seconds": 5.0, "concurrency": 1},
    )


def subscribe_many(store: Store, now: datetime) -> None:
    for n in range(PEOPLE):
        wanted = subscribers.Wanted(f"reader{n:02d}@example.org", "model")
        lifecycle.add(store, wanted, "operator", now)


def send(store: Store, config: Config, now: datetime) -> SendReport:
    return sending.send(store, config, transport_for(config.delivery, config.smtp), lambda: now)


def send_dry(store: Store, config: Config, now: datetime) -> int:
    """Record every due digest, sending none (the relay is down): how many were queued."""
    report = send(store, config, now)
    assert report.error
    return report.count("queued")


def test_delivery_takes_what_is_fed_while_it_runs(
    seeded_store: Store, tmp_path: Path, now: datetime
) -> None:
    """The feed a send fills chunk by chunk: each digest put in after delivery started
    goes out (here the next is put in only once the last has arrived)."""
    subscribe_many(seeded_store, now)
    first = send_dry(seeded_store, config_for(tmp_path, down_port()), now)
    with serve(Sink()) as server:
        config = config_for(tmp_path, server.port)
        ready = seeded_store.ready_digests(iso(now))
        assert len(ready) == PEOPLE == first

        async def deliver_one_by_one() -> list[str]:
            feed = Feed()
            deliverer = Deliverer(seeded_store, config, lambda: now, threading.Event())
            transport = transport_for(config.delivery, config.smtp)
            async with transport:
                running = asyncio.create_task(deliverer.run_feed(transport, feed))
                for n, digest in enumerate(ready, start=1):
                    feed.put([digest])
                    await asyncio.wait_for(asyncio.to_thread(server.handler.wait_for, n), 10)
                feed.close()
                return [report.status for report in await running]

        assert asyncio.run(deliver_one_by_one()) == ["sent"] * PEOPLE


def test_a_maildir_group_is_marked_sent_in_one_transaction(
    seeded_store: Store, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Maildir files the messages waiting together as one group, and their sends return
    together: their sent marks are written in one transaction, not one each."""
    subscribe_many(seeded_store, now)
    marked: list[int] = []
    mark_and_claim = seeded_store.mark_and_claim

    def counted(marks: list[tuple[int, int, str]], *args: Any, **kwargs: Any) -> set[int]:
        if marks:
            marked.append(len(marks))
        return mark_and_claim(marks, *args, **kwargs)

    monkeypatch.setattr(seeded_store, "mark_and_claim", counted)
    report = send(seeded_store, make_config(tmp_path), now)
    assert report.count("sent") == PEOPLE < GROUP
    assert marked == [PEOPLE]
    assert len(list((tmp_path / "var" / "mail" / "new").iterdir())) == PEOPLE


def test_a_send_freezes_what_it_holds_while_it_builds_and_leaves_nothing_frozen(
    seeded_store: Store, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is kept out of the cyclic collector's scans during the run; the daemon's
    later runs must still collect it."""
    subscribe_many(seeded_store, now)
    frozen: list[int] = []
    real_freeze = gc.freeze

    def freeze() -> None:
        real_freeze()
        frozen.append(gc.get_freeze_count())

    monkeypatch.setattr(sending.gc, "freeze", freeze)
    report = send(seeded_store, make_config(tmp_path), now)
    assert report.count("sent") == PEOPLE
    assert len(frozen) == 1
    assert frozen[0] > 0
    assert gc.get_freeze_count() == 0


def corrupt_stored_messages(store: Store) -> None:
    """Every message recorded from now on is stored as bytes no one can read back."""
    store.db.execute(
        "CREATE TRIGGER spoil AFTER INSERT ON messages BEGIN "
        "UPDATE messages SET data = x'00' WHERE digest_id = NEW.digest_id; END"
    )


@pytest.mark.parametrize("raw", [sending.IN_HAND, 0], ids=["raw", "packed"])
def test_a_digest_just_built_is_sent_from_the_bytes_in_hand(
    seeded_store: Store, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch, raw: int
) -> None:
    """Raw while few wait; packed past ``IN_HAND`` (here every one, with none kept raw),
    not read back: a message read back cannot be unpacked here."""
    monkeypatch.setattr(sending, "RECORD_CHUNK", CHUNK)
    monkeypatch.setattr(sending, "IN_HAND", raw)
    subscribe_many(seeded_store, now)
    corrupt_stored_messages(seeded_store)
    with serve(Sink()) as server:
        report = send(seeded_store, config_for(tmp_path, server.port), now)
        received = server.handler.wait_for(PEOPLE)
    assert report.count("sent") == PEOPLE
    assert {r.message_id for r in received} == {d.message_id for d in report.digests}
    assert all(r.data.startswith(b"Content-Type: multipart/alternative") for r in received)


def test_past_the_bytes_held_in_hand_a_message_is_read_back_from_the_store(
    seeded_store: Store, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded when building outruns the relay: the rest is read back (and a
    message that cannot be read fails alone)."""
    monkeypatch.setattr(sending, "RECORD_CHUNK", CHUNK)
    monkeypatch.setattr(sending, "IN_HAND", 0)
    monkeypatch.setattr(sending, "PACKED_IN_HAND", 0)
    subscribe_many(seeded_store, now)
    corrupt_stored_messages(seeded_store)
    with serve(Sink()) as server:
        report = send(seeded_store, config_for(tmp_path, server.port), now)
        assert server.handler.count == 0
    assert report.count("failed") == PEOPLE


def test_what_earlier_runs_left_ready_goes_out_first(
    seeded_store: Store, tmp_path: Path, now: datetime
) -> None:
    subscribe_many(seeded_store, now)
    assert send_dry(seeded_store, config_for(tmp_path, down_port()), now) == PEOPLE
    lifecycle.add(seeded_store, subscribers.Wanted("late@example.org", "model"), "operator", now)
    later = now + timedelta(hours=1)
    with serve(Sink()) as server:
        report = send(seeded_store, config_for(tmp_path, server.port), later)
        received = server.handler.wait_for(PEOPLE + 1)
    assert report.count("sent") == PEOPLE + 1
    assert [r.rcpt_tos for r in received][-1] == ("late@example.org",)
