"""``python -m bench.growth``: how the database grows per subscriber per month, and what
``digest prune`` takes back.  The figures are in the README ("Retention").

Simulated with the real code, day by day for ``--days`` days (default 30): a
generated listing of ``--papers`` papers (default 150, like the seed dumps) is
ingested at 06:00, ``pipeline.deliver`` builds and sends every due digest to a
Maildir at 07:00 (recording its job run), and ``--signups`` web sign-ups a day
(default 5) are never confirmed.  ``--subscribers`` (default 1,000) active
daily subscribers have generated filters (``bench.workload.FilterMaker``).

Measured: the bytes of the pages in use (``dbstat``, per table with its
indexes), at the start (papers of day 0 only, no digest) and after the last
day, before and after ``retention.prune`` run on the day after the last.  The
per-subscriber figure is the growth of the subscriber-side tables (digests,
deliveries, subscribers, subscription_events, job_runs) divided by the number
of subscribers; the papers' own growth does not depend on them and is shown apart.
"""

import argparse
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.dumpgen import load_corpus, write_dumps
from bench.workload import FilterMaker, add_subscribers, new_papers, subscriber_rows
from digest import config as config_module
from digest import lifecycle, pipeline, retention, subscribers
from digest.ingest import ingest_files
from digest.store import Store

START = datetime(2026, 1, 5, tzinfo=UTC)
PAPER_TABLES = ("papers", "papers_fts", "dumps", "sightings", "rejections")


def table_bytes(store: Store) -> dict[str, int]:
    """Bytes in use per table, its indexes (and FTS shadow tables) counted with it."""
    owner = {
        row[0]: row[1]
        for row in store.db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type != 'view'")
    }
    sizes: dict[str, int] = defaultdict(int)
    for name, size in store.db.execute(
        "SELECT name, SUM(pgsize - unused) FROM dbstat GROUP BY name"
    ):
        table = owner.get(name, name)
        sizes["papers_fts" if table.startswith("papers_fts") else table] += int(size)
    return dict(sizes)


def subscriber_side(sizes: dict[str, int]) -> int:
    return sum(v for k, v in sizes.items() if k not in PAPER_TABLES and not k.startswith("sqlite_"))


def paper_side(sizes: dict[str, int]) -> int:
    return sum(v for k, v in sizes.items() if k in PAPER_TABLES)


def simulate(folder: Path, people: int, days: int, papers: int, signups: int) -> None:
    config = config_module.from_mapping(
        {"storage": {"database": "digest.db"}, "delivery": {"maildir": "mail"}},
        source=folder / "config.toml",
    )
    dumps = write_dumps(
        [(folder / f"day{d:02}.txt", papers) for d in range(days)], seed=7, corpus=load_corpus()
    )
    store = Store(config.storage.database)
    ingest_files(store, [dumps[0].path], START)
    filters = FilterMaker(new_papers(store, START), seed=7).many(people)
    add_subscribers(store, subscriber_rows([f.filter for f in filters], START))
    start = table_bytes(store)
    for day in range(days):
        morning = START + timedelta(days=day, hours=6)
        if day:
            ingest_files(store, [dumps[day].path], morning)
        for n in range(signups):
            wanted = subscribers.Wanted(f"maybe{day}-{n}@example.net", "diffusion")
            lifecycle.request(store, wanted, morning)
        at = morning + timedelta(hours=1)
        report = pipeline.deliver(config, lambda at=at: at)  # type: ignore[misc]
        print(f"day {day + 1:2}: {pipeline._summary(report)}", file=sys.stderr)
    before = table_bytes(store)
    pruned = retention.prune(store, config, START + timedelta(days=days, hours=3))
    after = table_bytes(store)
    report_figures(people, days, start, before, after, pruned)
    store.close()


def report_figures(
    people: int,
    days: int,
    start: dict[str, int],
    before: dict[str, int],
    after: dict[str, int],
    pruned: retention.PruneReport,
) -> None:
    month = 30 / days
    print(f"{people} subscribers, {days} days")
    print(f"{'table':<22}{'start':>12}{'before prune':>14}{'after prune':>13}")
    for name in sorted(set(before) | set(after)):
        first, last = before.get(name, 0), after.get(name, 0)
        print(f"{name:<22}{start.get(name, 0):>12,}{first:>14,}{last:>13,}")
    for label, sizes in (("before prune", before), ("after prune", after)):
        grown = (subscriber_side(sizes) - subscriber_side(start)) * month / people
        print(f"subscriber-side growth {label}: {grown:,.0f} bytes/subscriber/month")
    papers = (paper_side(after) - paper_side(start)) * month
    print(f"papers-side growth: {papers / 1e6:,.2f} MB/month whatever the subscribers")
    for rule, removed in pruned.rules:
        print(f"pruned {removed.rows} rows, {removed.bytes} message bytes: {rule}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--papers", type=int, default=150)
    parser.add_argument("--signups", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-growth-") as folder:
        simulate(Path(folder), args.subscribers, args.days, args.papers, args.signups)


if __name__ == "__main__":
    main()
