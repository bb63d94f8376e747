"""``python -m bench``: run each stage's benchmark, print its figures, then a summary table.

Each stage is one module with ``run(settings) -> list[Figure]``, listed in
``STAGES`` below in pipeline order (ingest, fetch, match, render, send, then the
whole daily cycle); add later stages (feeds) there.  Stages that would run
long use fewer rounds unless ``--repeat`` is given (``Settings.rounds``); the
shared data they generate is in ``bench.workload``.  A FAIL against a target
is reported, not an error:
the exit status is 0 unless a benchmark could not measure at all (1) or the
arguments are wrong (2).
"""

import argparse
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from bench import (
    DEFAULT_REPEAT,
    DEFAULT_SEED,
    BenchError,
    Figure,
    Settings,
    cycle,
    feeds,
    fetch,
    history,
    ingest,
    interactive,
    match,
    model,
    number,
    preview,
    progress,
    render,
    scaling,
    send,
    web_latency,
)

Stage = Callable[[Settings], list[Figure]]

STAGES: dict[str, Stage] = {
    "ingest": ingest.run,
    "fetch": fetch.run,
    "match": match.run,
    "render": render.run,
    "send": send.run,
    "cycle": cycle.run,
    "scaling": scaling.run,
    "history": history.run,
    "feeds": feeds.run,
    "preview": preview.run,
    "web_latency": web_latency.run,
    "interactive": interactive.run,
    "model": model.run,
}

QUICK_SCALE = 0.05  # keeps a whole run under 3 minutes on the 2-core dev machine

COLUMNS = ("stage", "figure", "value", "unit", "ceiling", "ratio", "peak MB", "result")


def parse_args(argv: Sequence[str] | None) -> tuple[list[str], Settings]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput and peak memory of each stage, next to a bare ceiling "
        "measured in the same run.",
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(STAGES), help="run only this stage (repeatable)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink every stage's size (e.g. 0.2)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_SCALE") == "small",
        help=f"the inner loop's run: --scale {QUICK_SCALE} and one round per stage "
        "(also BENCH_SCALE=small); figures marked (scaled)",
    )
    parser.add_argument("--entries", type=int, help="ingest: entries in the generated dump")
    parser.add_argument(
        "--repeat",
        type=int,
        help=f"rounds per stage, best kept (default {DEFAULT_REPEAT}; fewer for the long stages)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
    parser.add_argument("--tmp", type=Path, help="where to create the temporary folders")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = min(args.scale, QUICK_SCALE)
        args.repeat = 1 if args.repeat is None else args.repeat
    repeat = DEFAULT_REPEAT if args.repeat is None else args.repeat
    if args.scale <= 0 or repeat < 1 or (args.entries is not None and args.entries < 1):
        parser.error("--scale, --repeat and --entries must be positive")
    settings = Settings(
        args.scale,
        args.entries,
        args.seed,
        repeat,
        args.keep,
        args.profile,
        args.tmp,
        repeat_given=args.repeat is not None,
    )
    return args.only or list(STAGES), settings


def run_stage(name: str, settings: Settings) -> list[Figure] | None:
    """The stage's figures, each printed as it arrives; None when it could not measure.

    Each stage runs in a freshly spawned process of its own, so that what one
    stage leaves behind (heap, caches, objects for the garbage collector to
    walk) changes neither the next one's timings nor its peak memory.
    """
    spawn = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            found = pool.submit(STAGES[name], settings).result()
    except BenchError as err:
        progress(f"[{name}] ERROR: {err}")
        return None
    except BrokenProcessPool:
        progress(f"[{name}] ERROR: the stage's process died")
        return None
    for figure in found:
        print(figure.line(), flush=True)
    return found


def summary(figures: list[Figure]) -> str:
    rows = [COLUMNS, *(_cells(f) for f in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cells(figure: Figure) -> tuple[str, ...]:
    peak = "-" if figure.peak_mb is None else f"{figure.peak_mb:,.1f}"
    return (
        figure.stage,
        figure.name,
        number(figure.value),
        figure.unit,
        number(figure.ceiling),
        figure.ratio_text(),
        peak,
        figure.result,
    )


def main(argv: Sequence[str] | None = None) -> int:
    stages, settings = parse_args(argv)
    figures: list[Figure] = []
    failed = []
    for name in stages:
        found = run_stage(name, settings)
        if found is None:
            failed.append(name)
        else:
            figures.extend(found)
    print(f"\nsummary\n{summary(figures)}")
    if failed:
        print(f"could not measure: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
