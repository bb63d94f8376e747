"""The service: schedule slots, missed runs from the database, one instance, systemd notify, and
the whole cycle end to end with real processes."""

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import config as config_module
from digest import lifecycle, pipeline, subscribers
from digest.errors import DatabaseReplaced, MissingDatabase
from digest.ingest import ingest_files
from digest.scheduler import (
    AlreadyRunning,
    InstanceLock,
    delivered,
    last_slot,
    missed,
    notify,
    watchdog_interval,
)
from digest.store import Store, iso

from .smtp_servers import Server

DIGEST = str(Path(sys.executable).with_name("digest"))


def schedule(**values: object) -> config_module.ScheduleConfig:
    return config_module.from_mapping({"schedule": values}).schedule


@pytest.mark.parametrize(
    ("deliver_at", "zone", "now", "slot"),
    [
        (["07:00"], "UTC", "2026-11-24T08:00:00+00:00", "2026-11-24T07:00:00+00:00"),
        (["07:00"], "UTC", "2026-11-24T06:59:00+00:00", "2026-11-23T07:00:00+00:00"),
        (["07:00", "19:00"], "UTC", "2026-11-24T20:00:00+00:00", "2026-11-24T19:00:00+00:00"),
        (["07:00"], "Europe/Berlin", "2026-11-24T06:30:00+00:00", "2026-11-24T06:00:00+00:00"),
        (["07:00"], "America/New_York", "2026-11-24T11:00:00+00:00", "2026-11-23T12:00:00+00:00"),
    ],
)
def test_the_last_slot_is_the_latest_delivery_time_not_after_now(
    deliver_at: list[str], zone: str, now: str, slot: str
) -> None:
    found = last_slot(schedule(deliver_at=deliver_at, timezone=zone), datetime.fromisoformat(now))
    assert found is not None
    assert found == datetime.fromisoformat(slot)


def test_after_ingest_has_no_slots() -> None:
    assert last_slot(schedule(deliver_at=["after_ingest"]), datetime.now(UTC)) is None


def test_a_missed_slot_is_decided_from_the_database(store: Store) -> None:
    plan = schedule(deliver_at=["07:00"])
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    today = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert missed(store, plan, now) == today
    run = store.start_run("deliver", iso(today - timedelta(days=1)), iso(today - timedelta(days=1)))
    store.finish_run(run, iso(today - timedelta(days=1)), "ok")
    assert missed(store, plan, now) == today
    unfinished = store.start_run("deliver", iso(today), iso(today))
    assert missed(store, plan, now) == today
    store.finish_run(unfinished, iso(now), "ok")
    assert missed(store, plan, now) is None


def serve_slot(store: Store, slot: datetime) -> None:
    run = store.start_run("deliver", iso(slot), iso(slot))
    store.finish_run(run, iso(slot), "ok")


def test_a_fall_back_day_serves_its_0230_slot_once(store: Store) -> None:
    plan = schedule(deliver_at=["02:30"], timezone="Europe/Berlin")
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the same wall time again
    slot = last_slot(plan, first)
    assert slot is not None
    assert last_slot(plan, second) == slot
    assert not delivered(store, slot)
    serve_slot(store, slot)
    assert delivered(store, slot)
    next_day = last_slot(plan, second + timedelta(days=1))
    assert next_day is not None
    assert not delivered(store, next_day)


def test_a_spring_forward_day_still_serves_its_missing_0230_slot_once(store: Store) -> None:
    plan = schedule(deliver_at=["02:30"], timezone="Europe/Berlin")
    fired = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST: 02:30 never came
    slot = last_slot(plan, fired)
    assert slot is not None
    assert slot.astimezone(UTC) <= fired
    assert slot.date().isoformat() == "2026-03-29"
    assert not delivered(store, slot)
    serve_slot(store, slot)
    assert delivered(store, last_slot(plan, fired + timedelta(minutes=30)) or slot)
    assert missed(store, plan, fired + timedelta(hours=2)) is None


def test_jobs_never_adopt_a_vanished_or_replaced_database(tmp_path: Path) -> None:
    config = config_module.from_mapping(
        {
            "storage": {"database": str(tmp_path / "digest.db")},
            "inbox": {"dir": str(tmp_path / "inbox")},
        }
    )
    with pipeline.open_store(config) as store:
        identity = store.adopt_identity()
    clock = lambda: datetime.now(UTC)  # noqa: E731
    pipeline.ingest(config, clock, identity=identity)
    for path in tmp_path.glob("digest.db*"):
        path.unlink()
    with pytest.raises(MissingDatabase):
        pipeline.ingest(config, clock, identity=identity)
    assert not (tmp_path / "digest.db").exists()
    Store(tmp_path / "digest.db").close()  # someone made a fresh, empty one
    with pytest.raises(DatabaseReplaced, match="not the database this service opened"):
        pipeline.ingest(config, clock, identity=identity)


def test_one_instance_per_database(tmp_path: Path) -> None:
    first, second = InstanceLock(tmp_path / "d.db"), InstanceLock(tmp_path / "d.db")
    first.acquire()
    with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_notify_speaks_the_systemd_protocol(notify_socket: socket.socket) -> None:
    assert notify("READY=1")
    assert notify_socket.recv(100) == b"READY=1"


def test_notify_does_nothing_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")


def test_the_watchdog_interval_is_half_of_watchdog_sec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None


# end to end ------------------------------------------------------------------------


def service_config(tmp_path: Path, port: int, deliver_at: list[str]) -> Path:
    path = tmp_path / "config.toml"
    times = ", ".join(f'"{t}"' for t in deliver_at)
    path.write_text(
        '[storage]\ndatabase = "var/digest.db"\n[inbox]\ndir = "inbox"\n[feeds]\ndir = "feeds"\n'
        f'[delivery]\nbackend = "smtp"\n[smtp]\nport = {port}\n'
        f"[schedule]\npoll_seconds = 1\ndeliver_at = [{times}]\n",
        encoding="utf-8",
    )
    store = Store(tmp_path / "var" / "digest.db")
    lifecycle.add(
        store, subscribers.Wanted("ada@example.org", "model"), "operator", datetime.now(UTC)
    )
    store.close()
    return path


class Running:
    """A ``digest run`` process and the notifications it sends."""

    def __init__(self, config: Path, notify_path: Path, **extra_env: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(notify_path))
        self.sock.settimeout(20)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), **extra_env}
        self.process = subprocess.Popen(
            [DIGEST, "--config", str(config), "run"], env=env, stderr=subprocess.PIPE, text=True
        )

    def expect(self, state: str) -> None:
        while (said := self.sock.recv(200).decode()) != state:
            assert "=" in said, said

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status (within the 10 s the issue allows) and the log."""
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
            raise AssertionError(f"still running 10 s after SIGTERM:\n{err}") from None
        self.sock.settimeout(0)
        said = []
        with contextlib.suppress(BlockingIOError):
            while True:
                said.append(self.sock.recv(200).decode())
        self.sock.close()
        assert "STOPPING=1" in said, err
        return self.process.returncode, err


def drop(dump: Path, inbox: Path, written_ago: float = 0) -> None:
    """Write-then-rename, as the README tells operators to (last written ``written_ago``
    seconds ago: a file older than ``[inbox] settle_seconds`` is taken at the first poll)."""
    inbox.mkdir(parents=True, exist_ok=True)
    partial = inbox / f".{dump.name}"
    shutil.copy(dump, partial)
    if written_ago:
        then = time.time() - written_ago
        os.utime(partial, (then, then))
    partial.rename(inbox / dump.name)


def wait_for_file(path: Path, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_bytes()


@pytest.mark.slow
def test_the_service_ingests_a_dropped_dump_delivers_and_rebuilds_the_feeds(
    tmp_path: Path, seed_files: list[Path], sink: Server
) -> None:
    config = service_config(tmp_path, sink.port, ["after_ingest"])
    service = Running(config, tmp_path / "n.sock")
    service.expect("READY=1")
    drop(seed_files[0], tmp_path / "inbox")
    [message] = sink.handler.wait_for(1, timeout=30)
    assert message.rcpt_tos == ("ada@example.org",)
    first_feed = wait_for_file(tmp_path / "feeds" / "all.atom")
    assert b"<entry>" in first_feed
    assert (tmp_path / "inbox" / "processed" / seed_files[0].name).exists()
    second = subprocess.run(
        [DIGEST, "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert second.returncode != 0
    assert f"already running (pid {service.process.pid})" in second.stderr
    drop(seed_files[3], tmp_path / "inbox")
    deadline = time.monotonic() + 20
    while (tmp_path / "feeds" / "all.atom").read_bytes() == first_feed:
        assert time.monotonic() < deadline, "the feed was not rebuilt after the second ingest"
        time.sleep(0.05)
    code, err = service.stop()
    assert code == 0, err
    assert "ingest: ingested" in err
    assert "deliver: sent ada@example.org" in err


@pytest.mark.slow
def test_a_delivery_missed_while_stopped_is_caught_up_once(
    tmp_path: Path, seed_files: list[Path], sink: Server
) -> None:
    slot = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    config = service_config(tmp_path, sink.port, [slot.strftime("%H:%M")])
    store = Store(tmp_path / "var" / "digest.db")
    yesterday = iso(slot - timedelta(days=1))
    store.finish_run(
        store.start_run("deliver", yesterday, yesterday), yesterday, "sent before the stop"
    )
    store.close()
    drop(seed_files[0], tmp_path / "inbox", written_ago=60)  # while the service was stopped
    first = Running(config, tmp_path / "n1.sock")
    first.expect("READY=1")
    sink.handler.wait_for(1, timeout=30)
    code, err = first.stop()
    assert code == 0, err
    assert "catching up the delivery" in err
    again = Running(config, tmp_path / "n2.sock")
    again.expect("READY=1")
    code, err = again.stop()
    assert code == 0, err
    assert "catching up" not in err
    assert sink.handler.count == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 20) -> dict[str, object]:
    """Poll ``url`` until it answers (the server is starting), then return its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return json.loads(answer.read())  # type: ignore[no-any-return]
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.05)


@pytest.mark.slow
def test_the_service_serves_the_web_front_when_enabled(tmp_path: Path, sink: Server) -> None:
    config = service_config(tmp_path, sink.port, ["07:00"])
    port = free_port()
    with config.open("a", encoding="utf-8") as out:
        out.write(f"[web]\nenabled = true\nport = {port}\n")
    service = Running(config, tmp_path / "n.sock")
    service.expect("READY=1")
    health = get_json(f"http://127.0.0.1:{port}/healthz")
    assert health["status"] == "ok"
    code, err = service.stop()
    assert code == 0, err


@pytest.mark.slow
def test_digest_serve_runs_the_web_front(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DIGEST_CONFIG": ""}
    subprocess.run([DIGEST, "migrate"], cwd=tmp_path, env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [DIGEST, "-q", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "DIGEST_CONFIG": ""},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert get_json(f"http://127.0.0.1:{port}/healthz")["papers"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "using a key generated for this database" in err  # a warning: -q keeps it
    assert "GET /healthz" not in err, "-q: no access lines"
    assert "INFO" not in err, err


@pytest.mark.slow
def test_sighup_reloads_the_config_and_keeps_the_old_one_when_the_new_one_is_bad(
    tmp_path: Path, sink: Server
) -> None:
    config = service_config(tmp_path, sink.port, ["07:00"])
    good = config.read_text()
    service = Running(config, tmp_path / "n.sock")
    service.expect("READY=1")
    config.write_text(good.replace("poll_seconds = 1", "poll_seconds = 'often'"))
    service.process.send_signal(signal.SIGHUP)
    service.expect("RELOADING=1")
    service.expect("READY=1")
    config.write_text(good.replace('deliver_at = ["07:00"]', 'deliver_at = ["08:30", "19:00"]'))
    service.process.send_signal(signal.SIGHUP)
    service.expect("RELOADING=1")
    service.expect("READY=1")
    code, err = service.stop()
    assert code == 0, err
    assert "reload: keeping the running config" in err
    assert "[schedule] poll_seconds: input should be a valid integer" in err
    assert "reload: config re-read; delivering at 08:30, 19:00 UTC" in err


@pytest.mark.slow
def test_the_watchdog_is_pinged_while_the_database_answers(tmp_path: Path, sink: Server) -> None:
    config = service_config(tmp_path, sink.port, ["07:00"])
    service = Running(config, tmp_path / "n.sock", WATCHDOG_USEC="400000")
    service.expect("READY=1")
    service.expect("WATCHDOG=1")
    service.expect("WATCHDOG=1")
    code, err = service.stop()
    assert code == 0, err


@pytest.mark.slow
def test_a_database_deleted_under_the_service_is_never_recreated(
    tmp_path: Path, sink: Server, seed_files: list[Path]
) -> None:
    config = service_config(tmp_path, sink.port, ["07:00"])
    service = Running(config, tmp_path / "n.sock", WATCHDOG_USEC="200000")
    service.expect("READY=1")
    service.expect("WATCHDOG=1")
    for path in (tmp_path / "var").glob("digest.db*"):
        path.unlink()
    drop(seed_files[0], tmp_path / "inbox")
    service.sock.settimeout(2)
    pings = 0  # a ping in flight at the deletion may still arrive; then silence
    with contextlib.suppress(TimeoutError):
        while True:
            service.expect("WATCHDOG=1")
            pings += 1
            assert pings <= 2, "the watchdog kept pinging without its database"
    code, err = service.stop()
    assert code == 0, err
    assert not (tmp_path / "var" / "digest.db").exists()
    assert (tmp_path / "inbox" / seed_files[0].name).exists(), "the dump waits for its database"
    assert err.count("watchdog: not healthy: no database at") == 1, err
    assert "Running job" not in err, "APScheduler's per-run lines are DEBUG"


@pytest.mark.slow
def test_sigterm_while_digests_are_built_stops_within_10_s_keeping_what_was_recorded(
    tmp_path: Path, sink: Server, seed_files: list[Path]
) -> None:
    config = service_config(tmp_path, sink.port, ["00:00"])  # missed today: caught up at start
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        ingest_files(store, seed_files, datetime.now(UTC) - timedelta(hours=1))
        wanted = [subscribers.Wanted(f"r{i:04d}@example.org", "model") for i in range(3000)]
        lifecycle.add_many(store, wanted, datetime.now(UTC) - timedelta(days=2))
    service = Running(config, tmp_path / "n.sock")
    service.expect("READY=1")
    database = tmp_path / "var" / "digest.db"
    deadline = time.monotonic() + 60
    while recorded(database) == 0:
        assert time.monotonic() < deadline, "no digest was ever recorded"
        time.sleep(0.05)
    code, err = service.stop()  # asserts the exit within 10 s
    assert code == 0, err
    assert 0 < recorded(database) < 3000
    assert "send: stopped after" in err
    restarted = Running(config, tmp_path / "n2.sock")  # the cut-short run is caught up
    restarted.expect("READY=1")
    deadline = time.monotonic() + 120
    while recorded(database) < 3000:
        assert time.monotonic() < deadline, f"only {recorded(database)} digests after a restart"
        time.sleep(0.2)
    code, err = restarted.stop()
    assert code == 0, err


def recorded(database: Path) -> int:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM digests").fetchone()[0])
