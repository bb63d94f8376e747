"""``digest run``: the service around the pipeline.

APScheduler (3.x) runs the jobs in one worker thread: poll the inbox every
``[schedule] poll_seconds`` (then rebuild the feeds, and deliver when
``deliver_at = ["after_ingest"]``), and deliver at each ``"HH:MM"`` of
``[schedule] deliver_at`` in ``[schedule] timezone``; fetching the sources and the
daily training of the relevance model (``[model] train_at``) have a thread each, so
neither ever delays a delivery.  Whether a delivery was
missed while the service was down is decided from the database (the
``job_runs`` table), not from memory, and caught up once at start.

One instance per database (an ``flock`` on ``<database>.lock``).  SIGTERM and
SIGINT stop new work, let the message in flight finish (the rest stay
queued) and exit 0; SIGHUP reloads the config, keeping the old one when the
new one is bad.  Under systemd (``Type=notify``) it says READY=1, STOPPING=1
and, when ``WatchdogSec`` is set, WATCHDOG=1 while the database answers.
"""

import fcntl
import logging
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from pathlib import Path
from types import FrameType
from typing import IO

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import config as config_module
from digest import declared, fetching, pipeline
from digest.config import Config, ScheduleConfig
from digest.errors import AlreadyRunning as AlreadyRunning
from digest.errors import ConfigError, DigestError
from digest.ingest import InboxWatch
from digest.sources.http import SourceClient
from digest.store import Identity, Store, iso

log = logging.getLogger("digest")
DELIVER = "deliver"
RECURRING = frozenset(
    {"poll", "fetch", "prune", "train"}
)  # with "deliver-HH:MM": what a reload redoes
FETCH_CHECK_SECONDS = 60  # how often the fetch job looks for a source that is due


class InstanceLock:
    """An exclusive ``flock`` beside the database, holding the owner's pid."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="ascii")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise AlreadyRunning(
                f"digest is already running (pid {owner}) on {self.path.with_suffix('')}",
                "stop it first, or use another [storage] database",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _same_database(running: Config, fresh: Config) -> None:
    """A reload keeps the database: the service holds its lock and knows its identity."""
    if fresh.storage.database != running.storage.database:
        raise ConfigError(
            f"[storage] database changed to {fresh.storage.database}",
            "a reload keeps the running database; restart the service to change it",
        )


def _quiet_scheduler_logs() -> None:
    """APScheduler's two INFO lines per job run go to DEBUG: the service logs one line
    per ingest, per digest and per error (``-v`` shows them again)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def notify(state: str) -> bool:
    """Tell systemd ``state`` (e.g. READY=1) over $NOTIFY_SOCKET; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as err:
            log.warning("systemd notify failed: %s", err)
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec, when it is set for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def last_slot(schedule: ScheduleConfig, now: datetime) -> datetime | None:
    """The latest ``deliver_at`` time at or before ``now`` (in the schedule's zone)."""
    if schedule.after_ingest:
        return None
    local = now.astimezone(schedule.zone)
    slots = [
        datetime.combine(local.date() - timedelta(days=back), time.fromisoformat(at), schedule.zone)
        for back in (0, 1)
        for at in schedule.deliver_at
    ]
    return max(s for s in slots if s <= local)


def delivered(store: Store, slot: datetime) -> bool:
    """Whether a finished delivery run already served ``slot``.

    A slot is the UTC instant ``last_slot`` gives a local date and ``deliver_at``
    time, the same whichever of a fall-back day's two 02:30s fires, so a slot
    is served once however often a trigger fires for it.
    """
    done = store.last_scheduled(DELIVER)
    return done is not None and done >= iso(slot)


def missed(store: Store, schedule: ScheduleConfig, now: datetime) -> datetime | None:
    """The delivery slot that passed without a finished delivery run, if any."""
    slot = last_slot(schedule, now)
    if slot is None:
        return None
    done = store.last_scheduled(DELIVER)
    return slot if done is None or done < iso(slot) else None


class Service:
    """The long-running process: scheduler, signals, watchdog, optional web front."""

    def __init__(self, config: Config, config_path: Path | None) -> None:
        self.config = config
        self.config_path = config_path
        self.stopping = threading.Event()
        self.reload_wanted = threading.Event()
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(1),
                "fetch": ThreadPoolExecutor(1),
                "model": ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 6 * 3600},
        )
        self.web: Callable[[], None] | None = None
        self.identity: Identity | None = None
        self._last_error: dict[str, str] = {}
        self.inbox_watch = InboxWatch()  # "unchanged since the previous poll" (ingest.settled)
        self._fetch_client: SourceClient | None = None  # the fetch run's, to cancel at a stop

    def clock(self) -> datetime:
        return datetime.now(self.config.schedule.zone)

    def run(self) -> int:
        lock = InstanceLock(self.config.storage.database)
        lock.acquire()
        try:
            self._start()
            self._wait()
        finally:
            self._stop()
            lock.release()
        return 0

    def _start(self) -> None:
        with pipeline.open_store(self.config) as store:  # migrate, or fail fast
            self.identity = store.adopt_identity()
        _quiet_scheduler_logs()
        self._schedule()
        self.scheduler.start()
        self._catch_up()
        self.web = self._start_web()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        notify("READY=1")
        log.info(
            "started: polling %s every %d s; %s",
            self.config.inbox.dir,
            self.config.schedule.poll_seconds,
            self._delivery_words(),
        )

    def _delivery_words(self) -> str:
        schedule = self.config.schedule
        if schedule.after_ingest:
            return "delivering after each ingest with new papers"
        return f"delivering at {', '.join(schedule.deliver_at)} {schedule.timezone}"

    def _schedule(self) -> None:
        schedule = self.config.schedule
        for job in self.scheduler.get_jobs():  # the recurring ones; a pending one-off stays
            if job.id in RECURRING or job.id.startswith("deliver-"):
                job.remove()
        self.scheduler.add_job(
            self._poll,
            IntervalTrigger(seconds=schedule.poll_seconds),
            id="poll",
            next_run_time=datetime.now(schedule.zone),
        )
        if fetching.chosen(self.config, None):
            self.scheduler.add_job(
                self._fetch,
                IntervalTrigger(seconds=FETCH_CHECK_SECONDS),
                id="fetch",
                executor="fetch",
                next_run_time=datetime.now(schedule.zone),
            )
        for at in () if schedule.after_ingest else schedule.deliver_at:
            hour, minute = at.split(":")
            trigger = CronTrigger(hour=int(hour), minute=int(minute), timezone=schedule.zone)
            self.scheduler.add_job(self._deliver, trigger, id=f"deliver-{at}")
        self._schedule_prune()
        self._schedule_train()

    def _schedule_prune(self) -> None:
        """Retention once a day at ``[storage] prune_at`` in ``[schedule] timezone``."""
        hour, minute = self.config.storage.prune_at.split(":")
        zone = self.config.schedule.zone
        trigger = CronTrigger(hour=int(hour), minute=int(minute), timezone=zone)
        self.scheduler.add_job(self._prune, trigger, id="prune")

    def _prune(self) -> None:
        with self._job("prune"):
            if not self.stopping.is_set():
                pipeline.prune(self.config, self.clock, self.identity)

    def _schedule_train(self) -> None:
        """The relevance model daily at ``[model] train_at``, on a thread of its own: the
        jobs on the main thread (polls, deliveries) never wait for it."""
        hour, minute = self.config.model.train_at.split(":")
        zone = self.config.schedule.zone
        trigger = CronTrigger(hour=int(hour), minute=int(minute), timezone=zone)
        self.scheduler.add_job(self._train, trigger, id="train", executor="model")

    def _train(self) -> None:
        with self._job("train"):
            if not self.stopping.is_set():
                log.info("train: %s", pipeline.train(self.config, self.clock, self.identity))

    def _catch_up(self) -> None:
        with pipeline.open_store(self.config, self.identity) as store:
            slot = missed(store, self.config.schedule, self.clock())
        if slot is not None:
            log.info("catching up the delivery of %s, missed while stopped", slot.isoformat())
            self.scheduler.add_job(self._deliver, id="catch-up", kwargs={"slot": slot})

    def _poll(self) -> None:
        with self._job("poll"):
            if self.stopping.is_set():
                return
            report = pipeline.ingest(
                self.config, self.clock, self.inbox_watch, identity=self.identity
            )
            if not report.files:
                return
            pipeline.build_feeds(self.config, self.identity)
            if self.config.schedule.after_ingest and report.new_papers:
                self._deliver(slot=self.clock())

    def _fetch(self) -> None:
        """On a thread of its own: a slow source never delays ingest or delivery."""
        with self._job("fetch"):
            client = fetching.make_client(self.config.fetch)
            self._fetch_client = client  # published before the check: a stop between cancels it
            if self.stopping.is_set():
                client.cancel()
            try:
                pipeline.fetch(self.config, self.clock, self.identity, client, self._fetched)
            finally:
                self._fetch_client = None

    def _fetched(self, result: fetching.FetchResult) -> None:
        """As each source is done: what it brought goes on while the next is asked."""
        if result.status == "ingested" and not self.stopping.is_set():
            self.scheduler.add_job(self._after_fetch, kwargs={"new": result.new})

    def _after_fetch(self, new: int) -> None:
        """Back on the main job thread: the feeds, and a delivery when it follows ingest."""
        with self._job("feeds"):
            pipeline.build_feeds(self.config, self.identity)
        if self.config.schedule.after_ingest and new:
            self._deliver(slot=self.clock())

    def _deliver(self, slot: datetime | None = None) -> None:
        with self._job("deliver"):
            if self.stopping.is_set():
                return
            slot = slot or last_slot(self.config.schedule, self.clock()) or self.clock()
            with pipeline.open_store(self.config, self.identity) as store:
                if delivered(store, slot):
                    log.debug("deliver: slot %s was served already", slot.isoformat())
                    return
            pipeline.deliver(
                self.config, self.clock, slot=slot, stop=self.stopping, identity=self.identity
            )

    @contextmanager
    def _job(self, name: str) -> Iterator[None]:
        """Each job's error boundary: a failure is logged once (until it changes or the job
        succeeds) and the next run of every job goes ahead."""
        try:
            yield
        except Exception as err:  # the boundary: nothing may stop the service
            text = str(err) if isinstance(err, DigestError) else f"{type(err).__name__}: {err}"
            self._failing(name, text, traceback=not isinstance(err, DigestError))
        else:
            self._working(name, f"{name}: working again")

    def _failing(self, name: str, text: str, *, traceback: bool = False) -> None:
        """Log ``name``'s failure once: again only when it says something new."""
        if self._last_error.get(name) != text:
            log.error("%s: %s", name, text, exc_info=traceback)
        self._last_error[name] = text

    def _working(self, name: str, message: str) -> None:
        """After a failure of ``name`` was logged, say once that it works again."""
        if self._last_error.pop(name, None) is not None:
            log.info("%s", message)

    def _wait(self) -> None:
        interval = watchdog_interval()
        while not self.stopping.wait(interval or 1.0):
            if self.reload_wanted.is_set():
                self.reload_wanted.clear()
                self._reload()
            if interval and self._healthy():
                notify("WATCHDOG=1")

    def _healthy(self) -> bool:
        """The database answers, and is still the one the service opened."""
        try:
            with pipeline.open_store(self.config, self.identity) as store:
                store.count("papers")
        except (DigestError, OSError, sqlite3.Error) as err:
            self._failing("watchdog", f"not healthy: {err}")
            return False
        self._working("watchdog", "watchdog: the database answers again")
        return True

    def _reload(self) -> None:
        notify("RELOADING=1")
        try:
            fresh = config_module.load(self.config_path)
            _same_database(self.config, fresh)
            self._sync_subscribers(fresh)
        except (DigestError, sqlite3.Error) as err:
            log.error("reload: keeping the running config: %s", err)
        else:
            self.config = fresh
            self._schedule()
            log.info("reload: config re-read; %s", self._delivery_words())
        notify("READY=1")

    def _sync_subscribers(self, config: Config) -> None:
        """``[[subscribers]]`` of ``config`` into the database; a bad table raises ConfigError
        before anything is written, so the reload keeps the running config."""
        with pipeline.open_store(config, self.identity) as store:
            declared.sync_declared(store, config, self.clock())

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping after the work in hand", signal.Signals(signum).name)
        self.stopping.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload_wanted.set()

    def _start_web(self) -> Callable[[], None] | None:
        if not self.config.web.enabled:
            return None
        from digest.web import start_in_thread

        return start_in_thread(self.config)

    def _stop(self) -> None:
        notify("STOPPING=1")
        self.stopping.set()
        client = self._fetch_client
        if client is not None:
            client.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.web is not None:
            self.web()
        log.info("stopped")
