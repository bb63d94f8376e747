"""Rendering in worker processes: the very digests one process renders, one bad digest
failing alone, and a pool that breaks leaving the rendering to the main process."""

import dataclasses
import email
import os
import signal
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest

from digest import outbox, render_pool, sending
from digest.config import Config
from digest.due import due_subscribers
from digest.render import DigestContent, Renderer
from digest.render_pool import WORKER_NICE, Rendered, RenderPool, Unrendered, spanned
from digest.store import Store, unpack

from .conftest import copy_database, make_config
from .test_one_fails_alone import (
    BIG,
    JOSE,
    READERS,
    TOO_BIG,
    assert_the_two_failed_alone,
    populate,
    run_send,
)
from .test_outbox import outbox_config

pytestmark = pytest.mark.slow  # each test starts worker processes


@pytest.fixture
def crowd_database(seeded_database: Path, tmp_path: Path, now: datetime) -> Path:
    """The seeds and the fifty readers (two bad rows among them), in a file to copy."""
    (tmp_path / "crowd").mkdir()
    path = copy_database(seeded_database, tmp_path / "crowd")
    with closing(Store(path)) as store:
        populate(store, now)
    return path


def maildir_messages(config: Config) -> dict[str, bytes]:
    """Each message in the Maildir by its Message-ID line."""
    found = {}
    for path in (config.delivery.maildir / "new").iterdir():
        data = path.read_bytes()
        found[str(email.message_from_bytes(data)["Message-ID"])] = data
    return found


def send_with(crowd_database: Path, folder: Path, now: datetime, workers: int) -> Config:
    folder.mkdir()
    config = make_config(folder, delivery={"maildir": "mail", "render_workers": workers})
    with closing(Store(copy_database(crowd_database, folder))) as store:
        report = run_send(store, config, now)
        assert_the_two_failed_alone(store, report)
    return config


def test_workers_render_the_very_messages_one_process_renders_and_bad_rows_fail_alone(
    crowd_database: Path, tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sending, "POOL_FROM", 1)
    monkeypatch.setattr(sending, "RECORD_CHUNK", 7)  # several chunks in flight at once
    alone = send_with(crowd_database, tmp_path / "alone", now, workers=1)
    pooled = send_with(crowd_database, tmp_path / "pooled", now, workers=2)
    assert len(maildir_messages(pooled)) == len(READERS)
    assert maildir_messages(pooled) == maildir_messages(alone)


def contents(crowd_database: Path, tmp_path: Path, now: datetime) -> list[DigestContent]:
    config = outbox_config(tmp_path)
    with closing(Store(copy_database(crowd_database, tmp_path))) as store:
        builder = outbox.Builder(store, config, outbox.Renderer(config), now)
        due, _ = due_subscribers(store, config, now)
        found = [builder.prepare(s) for s in due]
    return [c for c in found if isinstance(c, DigestContent)]


def test_a_pool_whose_workers_die_renders_the_rest_here(
    crowd_database: Path, tmp_path: Path, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    given = contents(crowd_database, tmp_path, now)
    config = outbox_config(tmp_path)
    with RenderPool(config, 2) as pool:
        assert pool.workers == 2
        first = list(pool.submit(given[:3]))
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
        rest = list(pool.submit(given[3:]))
    outcomes = first + rest
    assert "rendering the rest in the main process" in caplog.text
    assert len(outcomes) == len(given)
    by_email = {c.subscriber.email: o for c, o in zip(given, outcomes, strict=True)}
    big = by_email[BIG]
    assert isinstance(big, Unrendered)
    assert TOO_BIG in big.reason
    assert all(isinstance(o, Rendered) for e, o in by_email.items() if e not in (BIG, JOSE))


def test_workers_render_at_a_lower_priority_than_the_process_that_delivers(
    crowd_database: Path, tmp_path: Path, now: datetime
) -> None:
    """The main process matches, records and delivers alone: a core free for it when
    it needs one keeps delivery up with rendering."""
    given = contents(crowd_database, tmp_path, now)
    lower = min(os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE, 19)
    with RenderPool(outbox_config(tmp_path), 2) as pool:
        assert all(isinstance(o, Rendered | Unrendered) for o in pool.submit(given))
        deadline = time.monotonic() + 10  # a worker sets its priority as it starts
        while time.monotonic() < deadline and priorities(pool.worker_pids()) != [lower] * 2:
            time.sleep(0.01)
        assert priorities(pool.worker_pids()) == [lower] * 2


def test_a_worker_that_a_sandbox_keeps_from_lowering_its_priority_goes_on_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_serve`` calls this before its first slice: a refusal must not end the worker."""

    def refused(increment: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "nice", refused)
    assert render_pool._lower_priority() is False


def priorities(pids: list[int]) -> list[int]:
    return [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids]


def test_a_digest_trimmed_in_a_worker_comes_back_with_the_papers_it_holds(
    crowd_database: Path, tmp_path: Path, now: datetime
) -> None:
    """A worker sends back how many papers fitted and the packed bytes: the outcome is
    the content and the message one process makes of it."""
    given = next(c for c in contents(crowd_database, tmp_path, now) if c.matches)
    crowded = dataclasses.replace(given, matches=given.matches * 60)
    config = outbox_config(tmp_path)
    with RenderPool(config, 1) as pool:
        (outcome,) = pool.submit([crowded])
    fitted, data = Renderer(config).fit(spanned(crowded))
    assert isinstance(outcome, Rendered)
    assert 0 < len(outcome.content.matches) == len(fitted.matches) < len(crowded.matches)
    assert outcome.content.more == fitted.more > 0
    assert outcome.data == data
    assert unpack(outcome.packed) == data
