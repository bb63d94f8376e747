"""Reading a dump file into batches of parsed entries, for ingest.

A small file is parsed in this process.  A big one is parsed by a worker
process (``python -m digest.dump_reader FILE``) that streams pickled batches
through a pipe: reading, parsing, paper ids and links then run on a second core
while this process stores the previous batch and SQLite tokenises it for
FTS5.  On a 100,000-entry dump that parsing is about a fifth of the work.  The
pipe holds at most about one batch in flight, so memory stays flat.  The
stream comes from our own child process only, which is why pickle is safe here.

Both ways use the same ``DumpParser``, so they accept, reject and report
exactly alike; if the worker cannot be started, the file is parsed here.
"""

import contextlib
import fcntl
import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from digest.dumps import MAX_LINE_BYTES, DumpParser
from digest.errors import DigestError, DumpError
from digest.models import Entry

Progress = Callable[[int], None]
BATCH = 900
WORKER_MIN_BYTES = 4 << 20
PIPE_BYTES = 1 << 20
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_BATCH, _END, _BAD_DUMP, _UNREADABLE = "batch", "end", "bad dump", "unreadable"

log = logging.getLogger(__name__)


class WorkerError(DigestError):
    """The parser process died before the end of the file (the file itself may be fine)."""


class Batches(Protocol):
    """Batches of entries in listing order; ``listing_date`` is known once they are all read."""

    @property
    def listing_date(self) -> str | None: ...

    def __iter__(self) -> Iterator[list[Entry]]: ...


@contextmanager
def read_batches(
    path: Path, progress: Progress | None = None, *, worker_min_bytes: int = WORKER_MIN_BYTES
) -> Iterator[Batches]:
    """The file's entries in batches: parsed by a worker from ``worker_min_bytes`` on.

    Raises DumpError for a bad dump, OSError for an unreadable file and
    WorkerError when the worker dies; the worker never outlives the block.
    """
    worker = _start_worker(path) if path.stat().st_size >= worker_min_bytes else None
    if worker is None:
        with path.open("rb") as handle:
            yield _InlineBatches(handle, DumpParser(str(path)), progress)
        return
    try:
        yield _WorkerBatches(worker, path, progress)
    finally:
        _stop(worker)


def parsed_batches(handle: BinaryIO, parser: DumpParser) -> Iterator[tuple[int, list[Entry]]]:
    """Batches of ``BATCH`` entries, each with the bytes read for it; the last may be empty."""
    lines = iter(partial(handle.readline, MAX_LINE_BYTES), b"")
    batch: list[Entry] = []
    done = 0
    for entry in parser.parse(lines):
        batch.append(entry)
        if len(batch) == BATCH:
            offset = handle.tell()
            yield offset - done, batch
            done, batch = offset, []
    yield handle.tell() - done, batch


class _InlineBatches:
    def __init__(self, handle: BinaryIO, parser: DumpParser, progress: Progress | None) -> None:
        self._handle = handle
        self._parser = parser
        self._progress = progress

    @property
    def listing_date(self) -> str | None:
        return self._parser.listing_date

    def __iter__(self) -> Iterator[list[Entry]]:
        for consumed, batch in parsed_batches(self._handle, self._parser):
            if self._progress is not None:
                self._progress(consumed)
            if batch:
                yield batch


class _WorkerBatches:
    def __init__(self, worker: subprocess.Popen[bytes], path: Path, progress: Progress | None):
        self._worker = worker
        self._path = path
        self._progress = progress
        self._listing_date: str | None = None

    @property
    def listing_date(self) -> str | None:
        return self._listing_date

    def __iter__(self) -> Iterator[list[Entry]]:
        stream = self._worker.stdout
        assert stream is not None
        while True:
            kind, *rest = self._receive(stream)
            if kind == _BATCH:
                consumed, batch = rest
                if self._progress is not None:
                    self._progress(consumed)
                if batch:
                    yield batch
            elif kind == _END:
                self._listing_date = rest[0]
                return
            elif kind == _BAD_DUMP:
                reason, line = rest
                raise DumpError(reason, source=str(self._path), line=line)
            else:
                errno, strerror = rest
                raise OSError(errno, strerror, str(self._path))

    def _receive(self, stream: IO[bytes]) -> tuple[Any, ...]:
        try:
            frame = pickle.load(stream)
        except (EOFError, pickle.UnpicklingError):
            raise self._died() from None
        assert isinstance(frame, tuple)
        return frame

    def _died(self) -> WorkerError:
        code = self._worker.wait()
        stderr = self._worker.stderr.read().decode(errors="replace") if self._worker.stderr else ""
        last = stderr.strip().splitlines()[-1:] or ["no message"]
        return WorkerError(
            f"{self._path}: the parser process stopped (exit status {code}: {last[0]}); "
            "nothing was stored",
            "run the ingest again; if it stops again, run it with -v and report the output",
        )


def _start_worker(path: Path) -> subprocess.Popen[bytes] | None:
    """The parser process for ``path``, importing this very package; None if it cannot start."""
    pythonpath = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    try:
        worker = subprocess.Popen(
            [sys.executable, "-P", "-m", __name__, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": pythonpath},
        )
    except OSError as err:
        log.warning("%s: cannot start the parser process (%s); parsing here", path, err)
        return None
    _widen_pipe(worker)
    return worker


def _widen_pipe(worker: subprocess.Popen[bytes]) -> None:
    """A pipe that holds about a whole batch (Linux only; the 64 KB default also works).

    With the default, each batch crosses in some twenty alternations between
    the two processes, which costs a large ingest about a third of a second.
    """
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None and worker.stdout is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(worker.stdout.fileno(), setpipe, PIPE_BYTES)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    for stream in (worker.stdout, worker.stderr):
        if stream is not None:
            stream.close()


def serve(path: str, out: BinaryIO) -> None:
    """The worker: every frame of ``path`` to ``out``, ending with the outcome."""
    parser = DumpParser(path)
    send = partial(pickle.dump, file=out, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        with Path(path).open("rb") as handle:
            for consumed, batch in parsed_batches(handle, parser):
                send((_BATCH, consumed, batch))
    except DumpError as err:
        send((_BAD_DUMP, err.reason, err.line))
    except OSError as err:
        send((_UNREADABLE, err.errno, err.strerror or str(err)))
    else:
        send((_END, parser.listing_date))
    out.flush()


def main(argv: list[str]) -> int:
    """The worker's entry point.  It ignores SIGTERM and SIGINT: systemd signals
    the whole service and a terminal the whole process group, and the ingest in
    hand should still finish.  It ends at the end of the file, when its reader
    goes away (a broken pipe), or when its parent kills it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(argv) != 1:
        print(f"usage: python -m {__name__} DUMP_FILE  (writes frames for ingest)", file=sys.stderr)
        return 2
    try:
        serve(argv[0], sys.stdout.buffer)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
