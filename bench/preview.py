"""The subscribe preview: the costliest filter a subscriber may store, on 10,000 stored papers.

What is measured: ``digest.web.preview.preview`` (what the sign-up form's and the
manage page's *Preview* buttons run: the filter checked against the core's
limits, an FTS5 prefilter, the evaluator on the candidates, ranking of the
head, per-day counts) for the largest filter ``subscribers.check_filter`` lets
through: 24 terms ORed (plain words, prefixes and phrases drawn from the
papers' most common title words, so that it matches as much as it can) in at
most 500 characters.  Two stores of 10,000 papers: the realistic one, where
the ``[digest] lookback_days`` window holds a tenth of them (about 140 papers
a day, a busy listing) and the rest are older, with the target; and the worst
case, every paper inside the window, shown for reading.  The clock covers one
call; the best of several rounds is kept.

Why this ceiling: one bare FTS5 ``MATCH`` of the same 24 terms ORed, rows
fetched, is the least any preview of this filter must do.  The target is the
issue's: under 200 ms per preview, whatever the ceiling (the ratio is shown
for reading, lower is better).  A typical two-word filter is shown beside it.
"""

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bench import BenchError, Figure, PeakMemory, Settings, Target
from bench.workload import build_store, content, new_papers, note, utc_now, workdir, write_papers
from digest.config import DigestConfig
from digest.subscribers import MAX_FILTER_CHARS, MAX_FILTER_TERMS, check_filter
from digest.web.preview import preview

PAPERS = 10_000
TARGET_SECONDS = 0.2
PAPER_LINK = "https://arxiv.org/a?q={title}"


def run(settings: Settings) -> list[Figure]:
    size = settings.size(PAPERS)
    rounds = settings.rounds(5)
    full = settings.scale == 1.0
    figures = []
    with workdir(settings, "preview") as folder:
        window = max(1, size // 10)
        note("preview", f"{size:,} papers stored, {window:,} of them in the window")
        figures += measure(folder / "realistic", size - window, window, rounds, settings, full)
        note("preview", f"{size:,} papers stored, all of them in the window (the worst case)")
        figures += measure(folder / "worst", 1, size, rounds, settings, full, target=False)
    return figures


def measure(
    folder: Path,
    old: int,
    window: int,
    rounds: int,
    settings: Settings,
    full: bool,
    *,
    target: bool = True,
) -> list[Figure]:
    now = utc_now()
    papers = write_papers(folder, old, window, settings.seed)
    store = build_store(folder / "digest.db", papers, now)
    try:
        days = DigestConfig().lookback_days
        titles = [title for title, _ in new_papers(store, now - timedelta(seconds=1))]
        largest = largest_filter(titles)
        typical = " ".join(largest.split(" OR ")[:2]).replace('"', "")
        ceiling = best_of(rounds, lambda: bare_match(store.path, largest))
        with PeakMemory() as memory:
            worst = best_of(rounds, lambda: preview(store, largest, now, PAPER_LINK, days))
        common = best_of(rounds, lambda: preview(store, typical, now, PAPER_LINK, days))
        found = preview(store, largest, now, PAPER_LINK, days).total
    finally:
        store.close()
    where = f"{old + window:,} stored, {window:,} in the window"
    return [
        Figure(
            "preview",
            f"largest allowed filter ({MAX_FILTER_TERMS} terms ORed), {where}",
            worst,
            "s",
            ceiling=ceiling,
            peak_mb=memory.peak_mb,
            target=Target(max_value=TARGET_SECONDS, unit="s") if target else None,
            note=f"{found:,} papers matched; {len(largest)} characters",
            full_scale=full,
        ),
        Figure("preview", f"a two-word filter, {where}", common, "s", full_scale=full),
    ]


def largest_filter(titles: list[str]) -> str:
    """24 terms ORed within 500 characters, from the most common title words."""
    counts = Counter(w for title in titles for w in title.lower().split() if content(w))
    words = [w for w, _ in counts.most_common(MAX_FILTER_TERMS * 2)]
    terms = [*words[:16], *(f"{w[:4]}*" for w in words[16:20])]
    terms += [f'"{a} {b}"' for a, b in zip(words[20:24], words[24:28], strict=False)]
    query = " OR ".join(terms[:MAX_FILTER_TERMS])
    while len(query) > MAX_FILTER_CHARS:
        query = " OR ".join(query.split(" OR ")[:-1])
    check_filter(query)
    return query


def bare_match(path: Path, query: str) -> int:
    """The same terms in one FTS5 MATCH, rows fetched: the least a preview must do."""
    fts = " OR ".join(
        t if t.startswith('"') or t.endswith("*") else f'"{t}"' for t in query.split(" OR ")
    )
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT rowid FROM papers_fts WHERE papers_fts MATCH ?", [fts]
        ).fetchall()
    if not rows:
        raise BenchError(f"the ceiling's query matched nothing: {fts}")
    return len(rows)


def best_of(rounds: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best
