"""Benchmarks of digest's stages: each figure is printed next to a bare ceiling from the same run.

Absolute rates vary by ±30% between runs on the dev machine (see
``FIELD_NOTES.md``), so a figure on its own says little.  Every stage therefore
measures, in the same run and on the same data, the cheapest way the library
underneath could do the same work (its *ceiling*), and judges digest by the
ratio.  Each stage is one module exposing ``run(settings) -> list[Figure]``;
``bench/__main__.py`` keeps the registry and prints the summary.

Shared here: the run settings, the ``Figure`` record and how it prints, and
``run_measured``, which times a command in a fresh child process and reads that
child's own peak resident memory and CPU time (``RUSAGE_CHILDREN``).
"""

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000
DEFAULT_SEED = 20240730
DEFAULT_REPEAT = 3


class BenchError(Exception):
    """A benchmark could not measure what it should (wrong result, failed command)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Knobs shared by every stage: ``scale`` shrinks sizes, ``repeat`` rounds (best kept)."""

    scale: float = 1.0
    entries: int | None = None
    seed: int = DEFAULT_SEED
    repeat: int = DEFAULT_REPEAT
    keep: bool = False
    profile: bool = False
    tmp_root: Path | None = None

    def size(self, full: int, override: int | None = None) -> int:
        """The stage's size: the override if given, else ``full`` times the scale."""
        if override is not None:
            return override
        return max(1, round(full * self.scale))


@dataclass(frozen=True, slots=True)
class Target:
    """What a figure must reach: a share of its ceiling and/or a peak memory limit."""

    min_ratio: float | None = None
    max_peak_mb: float | None = None

    def describe(self) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f"≥{self.min_ratio:.0%} of ceiling")
        if self.max_peak_mb is not None:
            parts.append(f"peak <{self.max_peak_mb:,.0f} MB")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, optionally with its ceiling, peak memory and target."""

    stage: str
    name: str
    value: float
    unit: str
    ceiling: float | None = None
    peak_mb: float | None = None
    target: Target | None = None
    note: str = ""
    full_scale: bool = True

    @property
    def ratio(self) -> float | None:
        return None if not self.ceiling else self.value / self.ceiling

    @property
    def verdict(self) -> str:
        """PASS or FAIL against the target, ``-`` when the figure has none."""
        if self.target is None:
            return "-"
        ok = _within(self.ratio, self.target.min_ratio, above=True)
        ok = ok and _within(self.peak_mb, self.target.max_peak_mb, above=False)
        return "PASS" if ok else "FAIL"

    @property
    def result(self) -> str:
        """The verdict, flagged when the run was smaller than the acceptance scale."""
        scaled = self.target is not None and not self.full_scale
        return f"{self.verdict} (scaled)" if scaled else self.verdict

    def line(self) -> str:
        """The one line printed for this figure as soon as it is measured."""
        cells = [
            f"[{self.stage}] {self.name}: {number(self.value)} {self.unit}",
            f"ceiling {number(self.ceiling)} {self.unit}" if self.ceiling else "",
            f"ratio {percent(self.ratio)}" if self.ceiling else "",
            f"peak {self.peak_mb:,.1f} MB" if self.peak_mb is not None else "",
        ]
        if self.target is not None:
            cells.append(f"{self.verdict} (target {self.target.describe()}){self._scale_note()}")
        if self.note:
            cells.append(self.note)
        return " | ".join(c for c in cells if c)

    def _scale_note(self) -> str:
        return "" if self.full_scale else " [scaled-down run: not the acceptance scale]"


def _within(value: float | None, bound: float | None, *, above: bool) -> bool:
    if bound is None:
        return True
    if value is None:
        return False
    return value >= bound if above else value < bound


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def progress(message: str) -> None:
    """Progress goes to stderr so stdout holds only the figures."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A finished child process: wall time, its own peak RSS and CPU time, its output."""

    seconds: float
    peak_mb: float
    cpu_seconds: float
    exit_code: int
    stdout: str
    stderr: str


# A tiny interpreter between this process and the measured one: a child forked
# straight from the harness (which may hold hundreds of MB) keeps the harness's
# pages until exec, and ``ru_maxrss`` is a high-water mark that survives exec.
# Forked from this small wrapper instead, the measured child's peak is its own.
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump([code, seconds, usage.ru_maxrss, usage.ru_utime + usage.ru_stime], out)
"""


def run_measured(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> ChildRun:
    """Run ``argv`` in a fresh process: its wall time, peak RSS and CPU time, and its output."""
    report, out_path, err_path = (cwd / f".bench-{n}" for n in ("usage", "stdout", "stderr"))
    wrapper = [sys.executable, "-S", "-c", _WRAPPER, str(report), *argv]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(wrapper, cwd=cwd, env=env, stdout=out, stderr=err, check=True)
    code, seconds, maxrss, cpu = json.loads(report.read_text(encoding="utf-8"))
    run = ChildRun(
        seconds=seconds,
        peak_mb=_maxrss_bytes(maxrss) / MB,
        cpu_seconds=cpu,
        exit_code=code,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )
    for path in (report, out_path, err_path):
        path.unlink()
    return run


def _maxrss_bytes(maxrss: int) -> int:
    """``ru_maxrss`` is in KiB on Linux and in bytes on macOS."""
    return maxrss if sys.platform == "darwin" else maxrss * 1024
