"""Reading a dump file into batches of parsed entries, for ingest.

A small file is parsed in this process.  A big one is parsed by a worker
process that streams pickled batches through a pipe: reading, parsing, paper
ids and links then run on a second core while this process stores the
previous batch and SQLite tokenises it for FTS5.  On the benchmark's
100,000-entry dump, parsing here costs about one second in ten; moved to the
worker, ingest went from 74% to 87% of the bare-SQLite ceiling (in-process,
best of four rounds).  The pipe holds about one batch, so memory stays flat.

The worker is isolated (``python -I``) and imports this very package from its
folder; it writes its frames to a file descriptor of its own, never to
standard output.  Its stream is read from our own child only, which is why
pickle is safe here.  Both ways use the same ``DumpParser``, so they accept,
reject and report exactly alike.  If the worker cannot start, the file is
parsed here; if it dies, ``WorkerError`` says so (ingest then parses here).
"""

import contextlib
import fcntl
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from digest.dumps import MAX_LINE_BYTES, DumpParser
from digest.errors import DumpError
from digest.errors import WorkerError as WorkerError
from digest.files import open_nofollow
from digest.models import Entry

Progress = Callable[[int], None]
BATCH = 900
WORKER_MIN_BYTES = 4 << 20
PIPE_BYTES = 1 << 20
NO_WORKER = 1 << 62
_PACKAGE_DIR = Path(__file__).resolve().parent
_BATCH, _END, _BAD_DUMP, _UNREADABLE = "batch", "end", "bad dump", "unreadable"
_KINDS = frozenset({_BATCH, _END, _BAD_DUMP, _UNREADABLE})
_NOFOLLOW = "nofollow"

log = logging.getLogger(__name__)


class Batches(Protocol):
    """Batches of entries in listing order; ``listing_date`` is known once they are all read."""

    @property
    def listing_date(self) -> str | None: ...

    def __iter__(self) -> Iterator[list[Entry]]: ...


@contextmanager
def read_batches(
    path: Path,
    progress: Progress | None = None,
    *,
    worker_min_bytes: int = WORKER_MIN_BYTES,
    nofollow: bool = False,
) -> Iterator[Batches]:
    """The file's entries in batches: parsed by a worker from ``worker_min_bytes`` on.

    Raises DumpError for a bad dump, OSError for an unreadable file and
    WorkerError when the worker dies; the worker never outlives the block.
    ``NO_WORKER`` parses here whatever the size.  With ``nofollow`` (the inbox)
    a symlink at ``path`` is not read, here or in the worker (``ELOOP``).
    """
    size = (path.lstat() if nofollow else path.stat()).st_size
    worker = _start_worker(path, nofollow) if size >= worker_min_bytes else None
    if worker is None:
        with _open(path, nofollow) as handle:
            yield _InlineBatches(handle, DumpParser(str(path)), progress)
        return
    try:
        yield _WorkerBatches(worker, path, progress)
    finally:
        worker.close()


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
    def __init__(self, worker: "_Worker", path: Path, progress: Progress | None):
        self._worker = worker
        self._path = path
        self._progress = progress
        self._listing_date: str | None = None

    @property
    def listing_date(self) -> str | None:
        return self._listing_date

    def __iter__(self) -> Iterator[list[Entry]]:
        while True:
            kind, *rest = self._receive()
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

    def _receive(self) -> tuple[Any, ...]:
        try:
            frame = pickle.load(self._worker.frames)
        except Exception:  # truncated or garbled: whatever pickle raises, the worker failed
            raise self._died() from None
        if not isinstance(frame, tuple) or not frame or frame[0] not in _KINDS:
            raise self._died()
        return frame

    def _died(self) -> WorkerError:
        code = self._worker.stop()
        return WorkerError(
            f"{self._path}: the parser process stopped "
            f"(exit status {code}: {self._worker.last_words()})"
        )


@dataclass
class _Worker:
    """A running parser process, the read end of its frames, and its standard error."""

    process: subprocess.Popen[bytes]
    frames: BinaryIO
    errors: BinaryIO

    def stop(self) -> int:
        """Kill it if it still runs; its exit status."""
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def last_words(self) -> str:
        """The last line it wrote to standard error, if any."""
        self.errors.seek(0, os.SEEK_END)
        self.errors.seek(max(0, self.errors.tell() - 4096))
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def close(self) -> None:
        self.stop()
        self.frames.close()
        self.errors.close()


def worker_argv(path: Path, fd: int, nofollow: bool = False) -> list[str]:
    """The command of a parser process that writes the frames of ``path`` to descriptor ``fd``."""
    argv = [sys.executable, "-I", "-c", _BOOT, str(_PACKAGE_DIR), str(path), str(fd)]
    return [*argv, _NOFOLLOW] if nofollow else argv


def _open(path: Path, nofollow: bool) -> BinaryIO:
    return os.fdopen(open_nofollow(path), "rb") if nofollow else path.open("rb")


# Ignore SIGTERM and SIGINT first thing: systemd signals every process of the
# service and a terminal the whole process group, and the ingest in hand should
# still finish.  The worker ends at the end of the file, when its reader goes
# (a broken pipe), or when its parent kills it.
_BOOT = """\
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
import importlib.util, sys
package, path, fd, *flags = sys.argv[1:]
spec = importlib.util.spec_from_file_location(
    "digest", package + "/__init__.py", submodule_search_locations=[package]
)
sys.modules["digest"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from digest.dump_reader import main
sys.exit(main(path, int(fd), nofollow="nofollow" in flags))
"""


def _start_worker(path: Path, nofollow: bool = False) -> _Worker | None:
    """The parser process for ``path``; None (and a warning) if it cannot be started."""
    read_fd, write_fd = os.pipe()
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (the _Worker closes it)
    try:
        process = subprocess.Popen(
            worker_argv(path, write_fd, nofollow),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            pass_fds=(write_fd,),
        )
    except OSError as err:
        os.close(read_fd)
        errors.close()
        log.warning("%s: cannot start the parser process (%s); parsing here", path, err)
        return None
    finally:
        os.close(write_fd)
    _widen_pipe(read_fd)
    return _Worker(process, os.fdopen(read_fd, "rb"), errors)


def _widen_pipe(fd: int) -> None:
    """A pipe that holds about a whole batch (Linux only; the 64 KB default also works).

    With the default, each batch crosses in some twenty alternations between
    the two processes, which costs a large ingest about a third of a second.
    """
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setpipe, PIPE_BYTES)


def serve(path: str, out: BinaryIO, nofollow: bool = False) -> None:
    """The worker's work: every frame of ``path`` to ``out``, ending with the outcome."""
    parser = DumpParser(path)
    send = partial(pickle.dump, file=out, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        with _open(Path(path), nofollow) as handle:
            for consumed, batch in parsed_batches(handle, parser):
                send((_BATCH, consumed, batch))
    except BrokenPipeError:
        raise
    except DumpError as err:
        send((_BAD_DUMP, err.reason, err.line))
    except OSError as err:
        send((_UNREADABLE, err.errno, err.strerror or str(err)))
    else:
        send((_END, parser.listing_date))


def main(path: str, fd: int, nofollow: bool = False) -> int:
    """The worker's entry point (see ``_BOOT``): frames to ``fd``, buffered so that
    a write cut short (by SIGSTOP, say) is finished rather than lost."""
    out = os.fdopen(fd, "wb", buffering=PIPE_BYTES)
    try:
        serve(path, out, nofollow)
        out.flush()
    except BrokenPipeError:
        return 1
    finally:
        with contextlib.suppress(OSError):
            out.close()
    return 0
