"""History: the daily cycle day after day, to show its cost follows today's work, not the past.

``python -m bench --only history`` (or ``python -m bench.history``): 10,000 active
daily subscribers (``bench.workload``'s generated filters) and 30 simulated days
with the clock injected (one day apart, 07:00 UTC).  Each day, in a fresh process
of its own (so its peak RSS is the day's): a few subscribers leave (0.3 % of the
active ones unsubscribe, 0.2 % pause), a new generated listing of 1,000 papers is
ingested, ``sending.send`` delivers every due digest to a Maildir, and
``retention.prune`` runs as the service runs it daily.  Printed per day: digests
sent, the cycle's time (ingest + send), the process's CPU time and peak RSS, the database
file's size and its growth.

Targets: the last day's cycle time and peak within 1.2x of the first day's, and the
database growing at most half the 21 MB a day the issue measured for 10,000
subscribers (scaled by the subscribers simulated) -- the mean of the days after
the first.  ``--before CHECKOUT`` (standalone only) runs the same days with the
code of another checkout (its ``digest`` package first on ``PYTHONPATH``): the
day's process only uses APIs that predate this stage.  ``--scale 0.1`` is 1,000
subscribers over 10 days of 200 papers.
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import BenchError, ChildRun, Figure, Settings, Target, run_measured
from bench.dumpgen import load_corpus, write_dumps
from bench.workload import FilterMaker, note, subscriber_rows, workdir
from digest.dumps import parse

STAGE = "history"
FULL_SUBSCRIBERS = 10_000
FULL_DAYS = 30
FULL_PAPERS = 1_000
START = datetime(2026, 1, 5, 7, tzinfo=UTC)
BEFORE_MB_PER_DAY = 21.0  # issue 16, 10,000 subscribers, the code before m007
MB = 1_000_000
FLAT = 1.2
LOOKBACK = 7  # [digest] lookback_days: day 1 starts with a full window of listings
TABLES = ("digests", "deliveries", "subscription_events")

# The day's process: only APIs older than this stage, so that ``--before`` can run it
# against an older checkout.  argv: database, maildir, dump, ISO time, day.
_DAY = """
import json, random, sys, time
from datetime import datetime
from pathlib import Path
from digest import config as config_module, lifecycle, retention, sending
from digest.ingest import ingest_files
from digest.mailer import transport_for
from digest.store import Store

database, maildir, dump, at, day = sys.argv[1:6]
moment = datetime.fromisoformat(at)
config = config_module.from_mapping(
    {"storage": {"database": database}, "delivery": {"maildir": maildir}},
    source=Path(database).parent / "config.toml",
)
store = Store(Path(database))
rng = random.Random(int(day))
active = store.subscribers(["active"])
for person in rng.sample(active, len(active) * 5 // 1000):
    if rng.random() < 0.6:
        lifecycle.unsubscribe(store, person, moment)
    else:
        lifecycle.change_status(store, person, "pause", "operator", moment)
start = time.perf_counter()
ingest_files(store, [Path(dump)], moment)
ingested = time.perf_counter()
transport = transport_for(config.delivery, config.smtp)
report = sending.send(store, config, transport, lambda: moment)
sent = time.perf_counter()
retention.prune(store, config, moment)
pruned = time.perf_counter()
store.close()
print(json.dumps({"sent": report.count("sent"), "ingest": ingested - start,
                  "send": sent - ingested, "prune": pruned - sent}))
"""

# argv: database, subscriber rows (JSON), then a dump and its ISO time for each day before.
_SETUP = """
import json, sys
from datetime import datetime
from pathlib import Path
from digest.ingest import ingest_files
from digest.store import Store

database, rows, *before = sys.argv[1:]
store = Store(Path(database))
for dump, at in zip(before[::2], before[1::2]):
    ingest_files(store, [Path(dump)], datetime.fromisoformat(at))
people = json.loads(Path(rows).read_text(encoding="utf-8"))
columns = list(people[0])
with store.write():
    store.db.conn.executemany(
        f"INSERT INTO subscribers ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [tuple(row[c] for c in columns) for row in people],
    )
store.close()
"""


@dataclass(frozen=True, slots=True)
class Day:
    number: int
    sent: int
    seconds: float  # ingest + send
    prune_seconds: float
    cpu_seconds: float  # the whole process's, less swayed than wall time by a busy machine
    peak_mb: float
    size: int
    growth: int


def run(settings: Settings) -> list[Figure]:
    people, days, papers = sizes(settings)
    with workdir(settings, STAGE) as folder:
        history = simulate(folder, people, days, papers, settings.seed, code=None)
    return figures(people, history, full=people >= FULL_SUBSCRIBERS and days >= FULL_DAYS)


def sizes(settings: Settings) -> tuple[int, int, int]:
    """Subscribers, days and papers a day: 10,000 x 30 x 1,000, and 1,000 x 10 x 200 at 0.1."""
    days = min(FULL_DAYS, max(10, round(FULL_DAYS * settings.scale)))
    return settings.size(FULL_SUBSCRIBERS), days, max(200, settings.size(FULL_PAPERS))


def simulate(
    folder: Path, people: int, days: int, papers: int, seed: int, code: Path | None
) -> list[Day]:
    """The days, each in its own process, with ``code`` (a checkout) first on the path."""
    dumps = write_dumps(
        [(folder / f"day{d:02}.txt", papers) for d in range(days + LOOKBACK)], seed, load_corpus()
    )
    database, maildir = folder / "digest.db", folder / "mail"
    env = child_env(code)
    first = parse(dumps[0].path.read_bytes()).entries
    filters = FilterMaker([(e.title, e.abstract) for e in first], seed).many(people)
    rows = folder / "subscribers.json"
    made = subscriber_rows([f.filter for f in filters], START - timedelta(days=1), seed=seed)
    rows.write_text(json.dumps(made), encoding="utf-8")
    before = [  # a full lookback window of listings before day 1, none sent yet
        str(x)
        for n in range(LOOKBACK)
        for x in (dumps[n].path, (START - timedelta(days=LOOKBACK - n)).isoformat())
    ]
    checked(
        run_measured([sys.executable, "-c", _SETUP, str(database), str(rows), *before], folder, env)
    )
    history: list[Day] = []
    size = database.stat().st_size
    for number in range(1, days + 1):
        at = (START + timedelta(days=number - 1)).isoformat()
        dump = dumps[LOOKBACK + number - 1].path
        argv = [sys.executable, "-c", _DAY, str(database), str(maildir), str(dump)]
        child = checked(run_measured([*argv, at, str(number)], folder, env))
        found = json.loads(child.stdout)
        grown = database.stat().st_size
        day = Day(
            number,
            found["sent"],
            found["ingest"] + found["send"],
            found["prune"],
            child.cpu_seconds,
            child.peak_mb,
            grown,
            grown - size,
        )
        size = grown
        history.append(day)
        note(
            STAGE,
            f"day {number:2}: {day.sent:,} sent, cycle {day.seconds:.1f} s "
            f"(prune {day.prune_seconds:.1f} s, process CPU {day.cpu_seconds:.1f} s), "
            f"peak {day.peak_mb:,.0f} MB, "
            f"database {day.size / MB:,.1f} MB ({day.growth / MB:+,.2f} MB)",
        )
    report_tables(database)
    return history


def report_tables(database: Path) -> None:
    """Bytes in use per table and index at the end (``dbstat``), read-only, whatever the code."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT name, SUM(pgsize - unused), SUM(ncell) FROM dbstat "
            "WHERE pagetype = 'leaf' OR pagetype IS NULL OR 1 GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
        counts = {n: db.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in TABLES}
    for name, used, _ in rows[:12]:
        note(STAGE, f"  {name:<32} {used / MB:8.2f} MB")
    for name, count in counts.items():
        note(STAGE, f"  {name:<32} {count:10,} rows")


def child_env(code: Path | None) -> dict[str, str]:
    """The day's environment: ``code``'s checkout first on the path when given."""
    env = dict(os.environ)
    here = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (code, here) if p is not None)
    return env


def checked(child: ChildRun) -> ChildRun:
    if child.exit_code != 0:
        raise BenchError(f"a simulated day exited {child.exit_code}: {child.stderr[-2000:]}")
    return child


def growth_per_day(history: list[Day]) -> float:
    """Mean bytes a day after the first (the first day also fills the empty tables)."""
    later = history[1:] or history
    return sum(d.growth for d in later) / len(later)


def figures(people: int, history: list[Day], *, full: bool) -> list[Figure]:
    first, last = history[0], history[-1]
    days = f"day {last.number} vs day 1"
    before = BEFORE_MB_PER_DAY * people / FULL_SUBSCRIBERS
    return [
        Figure(
            STAGE,
            f"cycle time, {days} ({people:,} subscribers)",
            last.seconds,
            "s",
            ceiling=first.seconds,
            target=Target(max_ratio=FLAT),
            note=f"{last.sent:,} digests sent on day {last.number}, {first.sent:,} on day 1",
            full_scale=full,
        ),
        Figure(
            STAGE,
            f"cycle peak RSS, {days}",
            last.peak_mb,
            "MB",
            ceiling=first.peak_mb,
            peak_mb=last.peak_mb,
            target=Target(max_ratio=FLAT),
            full_scale=full,
        ),
        Figure(
            STAGE,
            "database growth per day",
            growth_per_day(history) / MB,
            "MB",
            ceiling=before,
            target=Target(max_ratio=0.5),
            note=f"ceiling: the issue's 21 MB/day for 10,000 subscribers, scaled; "
            f"file {last.size / MB:,.1f} MB after {last.number} days",
            full_scale=full,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=Settings().seed)
    parser.add_argument("--before", type=Path, help="a checkout whose code runs the days")
    args = parser.parse_args()
    people, days, papers = sizes(Settings(scale=args.scale))
    with tempfile.TemporaryDirectory(prefix="digest-history-") as folder:
        history = simulate(Path(folder), people, days, papers, args.seed, code=args.before)
    for figure in figures(people, history, full=people >= FULL_SUBSCRIBERS):
        print(figure.line())


if __name__ == "__main__":
    main()
