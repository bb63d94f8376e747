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

import ctypes
import gc
import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
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
    repeat_given: bool = False

    def rounds(self, default: int) -> int:
        """``--repeat`` when given, else the stage's own default (long stages run fewer)."""
        return self.repeat if self.repeat_given else default

    def size(self, full: int, override: int | None = None) -> int:
        """The stage's size: the override if given, else ``full`` times the scale."""
        if override is not None:
            return override
        return max(1, round(full * self.scale))


@dataclass(frozen=True, slots=True)
class Target:
    """What a figure must reach: a share of its ceiling, a limit on its value, peak memory.

    ``min_ratio`` is for rates (higher is better: at least that share of the
    ceiling's rate); ``max_ratio`` and ``max_value`` are for durations (lower is
    better: at most that multiple of the ceiling's time, at most that value).
    """

    min_ratio: float | None = None
    max_peak_mb: float | None = None
    max_ratio: float | None = None
    max_value: float | None = None
    unit: str = ""

    def describe(self) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f"≥{self.min_ratio:.0%} of ceiling")
        if self.max_ratio is not None:
            parts.append(f"≤{self.max_ratio:g}× ceiling")
        if self.max_value is not None:
            parts.append(f"≤{self.max_value:g} {self.unit}".rstrip())
        if self.max_peak_mb is not None:
            parts.append(f"peak <{self.max_peak_mb:,.0f} MB")
        return ", ".join(parts)

    def met(self, value: float, ratio: float | None, peak_mb: float | None) -> bool:
        return (
            _within(ratio, self.min_ratio, above=True)
            and _at_most(ratio, self.max_ratio)
            and _at_most(value, self.max_value)
            and _within(peak_mb, self.max_peak_mb, above=False)
        )


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
        return "PASS" if self.target.met(self.value, self.ratio, self.peak_mb) else "FAIL"

    @property
    def lower_is_better(self) -> bool:
        """Durations: the ratio is printed as a multiple of the ceiling's time."""
        target = self.target
        return target is not None and (target.max_ratio is not None or target.max_value is not None)

    def ratio_text(self) -> str:
        ratio = self.ratio
        if ratio is not None and self.lower_is_better:
            return f"{ratio:.2f}×"
        return percent(ratio)

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
            f"ratio {self.ratio_text()}" if self.ceiling else "",
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


def _at_most(value: float | None, bound: float | None) -> bool:
    if bound is None:
        return True
    return value is not None and value <= bound


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


def run_measured(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    *,
    keep_stdout: bool = True,
) -> ChildRun:
    """Run ``argv`` in a fresh process: its wall time, peak RSS and CPU time, and its output.

    The peak is that of the largest process among it and its own children;
    the CPU time is theirs all together.  ``keep_stdout=False`` sends a large
    binary output to /dev/null.
    """
    report, out_path, err_path = (cwd / f".bench-{n}" for n in ("usage", "stdout", "stderr"))
    wrapper = [sys.executable, "-S", "-c", _WRAPPER, str(report), *argv]
    target = out_path if keep_stdout else Path(os.devnull)
    with target.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(wrapper, cwd=cwd, env=env, stdout=out, stderr=err, check=True)
    code, seconds, maxrss, cpu = json.loads(report.read_text(encoding="utf-8"))
    run = ChildRun(
        seconds=seconds,
        peak_mb=_maxrss_bytes(maxrss) / MB,
        cpu_seconds=cpu,
        exit_code=code,
        stdout=out_path.read_text(encoding="utf-8", errors="replace") if keep_stdout else "",
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )
    for path in (report, out_path, err_path):
        path.unlink(missing_ok=True)
    return run


def _maxrss_bytes(maxrss: int) -> int:
    """``ru_maxrss`` is in KiB on Linux and in bytes on macOS."""
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class PeakMemory:
    """This process's peak resident memory during a ``with`` block, in MB.

    On entry garbage is collected and free heap handed back to the OS; on Linux
    the high-water mark is then reset (``/proc/self/clear_refs``) and read on exit
    (``VmHWM``), so ``peak_mb`` is the peak during the block; it includes what the
    process already held (``start_mb``).  Elsewhere, or when
    the reset is refused, it is the process's lifetime peak (``reset`` False).
    """

    def __init__(self) -> None:
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self.reset = False

    def __enter__(self) -> "PeakMemory":
        _release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
            self.reset = True
        except OSError:
            self.reset = False
        self.start_mb = _status_mb("VmRSS") or 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_mb("VmHWM") if self.reset else None
        if peak is None:
            peak = _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / MB
        self.peak_mb = peak

    def describe(self) -> str:
        held = f"{self.start_mb:,.0f} MB held before" if self.reset else "lifetime peak"
        return f"process peak RSS ({held})"


def _release_free_memory() -> None:
    """Collect garbage and hand free heap back to the OS (glibc), so the start is honest."""
    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_mb(key: str) -> float | None:
    """A ``kB`` line of ``/proc/self/status`` in MB, None where there is none."""
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found[1]) * 1024 / MB if found else None
