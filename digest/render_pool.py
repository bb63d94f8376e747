"""Rendering on every core: digests rendered and packed for the store in worker processes.

Rendering and serialising a message is most of what a send costs, and one
Python process renders on one core.  ``RenderPool`` hands each digest's
``DigestContent`` (what the templates need, each paper's matched terms included) to
worker processes, which find the spans its filter matched, fit it under the size
limit, render it and pack it the store's way (``digest.store.pack``); the main
process meanwhile matches the next subscribers and records the last ones.  Results
come back in the order given.
Only what the other side lacks crosses a worker's pipe: each paper once (the
contents name papers by seq, and the worker keeps those it was sent), and back
how many papers fitted with the bytes, packed and not (a whole ``Rendered``
pickled cost each side 0.15 ms a digest; the main process sends the bytes in
hand without unpacking them).

Each worker has a pipe of its own and a feeding thread here, which sends it a
slice of contents and waits for the slice rendered.  A worker that dies (killed,
out of memory) closes its pipe, so its thread sees it at once: that slice and
every later one are rendered in the main process instead, with a warning.
(``ProcessPoolExecutor`` was tried first: when a worker is killed while its
queue's pipe is full, its feeder thread blocks for good and the process never exits.)

A worker runs ``WORKER_NICE`` below the main process.  It ignores SIGTERM and
SIGINT: systemd signals the whole service, and the main process decides when to
stop (it takes back the slices in hand, then ends the workers).  What one content
does fails only that digest (``Unrendered``).
"""

import asyncio
import dataclasses
import gc
import io
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from digest.config import Config
from digest.match import compile_filter, highlighted, shared_stemmer
from digest.models import PaperRow
from digest.render import DigestContent, Renderer, first
from digest.reports import failure_reason
from digest.store import Packed, pack

T = TypeVar("T")
SLICE = 20  # digests per round trip: fewer of them, and still an even share for each worker
# A worker's cyclic collector runs a hundred times less often than Python's default (700,
# 10, 10): its heap grows with the papers and paper views it keeps, and rendering leaves
# little cyclic garbage; collecting took 6% of a worker's CPU at 30,000 subscribers.
WORKER_GC = (70_000, 10, 10)
# Workers run at a lower priority than the main process (nice 10 more): it alone matches,
# records and delivers, so when it waits for a core the whole send waits.  At the same
# priority it got no more than its share against two workers, delivery fell behind, and
# a send ended with a sixth of its time on one core delivering what was left (30,000
# subscribers: 55 s, 43 s with this).  What the workers do not take stays with it.
WORKER_NICE = 10
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A fitted digest: the content actually rendered (from a worker, without the spans:
    nothing after rendering uses them), its bytes, and the same packed."""

    content: DigestContent
    data: bytes
    packed: Packed


@dataclass(frozen=True, slots=True)
class Unrendered:
    """A digest that could not be rendered: the reason (one line) and, for -v, the trace."""

    reason: str
    trace: str


Outcome = Rendered | Unrendered
_Task = tuple[list[DigestContent], "Future[list[Outcome]]"]


class WorkerGone(Exception):
    """A worker process ended before it sent back what it was given."""


def render_one(renderer: Renderer, content: DigestContent) -> Outcome:
    """Find the spans the filter matched, then fit, render and pack one digest; whatever
    goes wrong is this digest's alone."""
    try:
        fitted, data = renderer.fit(spanned(content))
    except Exception as err:  # one digest, whatever the cause (see digest.outbox)
        return Unrendered(failure_reason(err), traceback.format_exc())
    return Rendered(fitted, data, pack(data))


def spanned(content: DigestContent) -> DigestContent:
    """The content with the spans of each abstract that the subscriber's filter matched:
    the last step of matching, done here so that it runs on every core too.  (The terms
    each paper satisfied come with the content: the batch that matched it has each
    term's bitset at hand, where a worker had to index each paper alone to find them.)"""
    node, stemmer = compile_filter(content.subscriber.filter), shared_stemmer()
    return replace(content, matches=highlighted(node, content.matches, stemmer))


def workers_for(config: Config) -> int:
    """``[delivery] render_workers``, where 0 means one per core this process may use."""
    return config.delivery.render_workers or len(os.sched_getaffinity(0))


class RenderPool:
    """Worker processes, each with its own ``Renderer``; see the module docstring."""

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._feeders: list[_Feeder] = []
        self._alive = 0
        self._lock = threading.Lock()
        self._inline: Renderer | None = None

    def __enter__(self) -> "RenderPool":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # workers fork with the renderer imported
        try:
            for _ in range(self.workers):
                self._feeders.append(_Feeder(context, self.config, self._tasks, self._ended))
                self._alive += 1
        except OSError as err:  # no processes allowed here: render in this process
            log.warning("rendering on one core: cannot start worker processes: %s", err)
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self._feeders:
            self._tasks.put(None)
        for feeder in self._feeders:
            feeder.close()

    def submit(self, contents: Sequence[DigestContent]) -> "Rendering":
        """Start rendering ``contents`` now; the ``Rendering`` yields them in order as they
        come, to a loop (``async for``) or to a thread that waits (``for``)."""
        slices = [list(contents[i : i + SLICE]) for i in range(0, len(contents), SLICE)]
        futures: list[Future[list[Outcome]]] = []
        for part in slices:
            future: Future[list[Outcome]] = Future()
            with self._lock:
                if self._alive:
                    self._tasks.put((part, future))
                else:
                    future.set_exception(WorkerGone("no render worker is running"))
            futures.append(future)
        return Rendering(self, list(zip(slices, futures, strict=True)))

    def _ended(self) -> None:
        """A worker is gone; when it was the last, what is queued is rendered here."""
        with self._lock:
            self._alive -= 1
            if self._alive:
                return
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    return
                if task is not None:
                    task[1].set_exception(WorkerGone("no render worker is running"))

    def worker_pids(self) -> list[int]:
        """The workers' process ids."""
        return [feeder.pid for feeder in self._feeders]

    def _render_here(self, part: list[DigestContent], why: WorkerGone) -> list[Outcome]:
        if self._inline is None:
            log.warning("rendering the rest in the main process: %s", why)
            self._inline = Renderer(self.config)
        return [render_one(self._inline, content) for content in part]


class Rendering:
    """The outcomes of one ``RenderPool.submit``, slice by slice in the order given; a slice
    whose worker is gone is rendered in this process instead."""

    def __init__(
        self, pool: RenderPool, slices: list[tuple[list[DigestContent], "Future[list[Outcome]]"]]
    ) -> None:
        self._pool = pool
        self._slices = slices

    def __iter__(self) -> Iterator[Outcome]:
        for part, future in self._slices:
            try:
                yield from future.result()
            except WorkerGone as err:
                yield from self._pool._render_here(part, err)

    async def __aiter__(self) -> AsyncIterator[Outcome]:
        """The same, waiting without blocking the event loop (a send delivers meanwhile)."""
        for part, future in self._slices:
            try:
                outcomes = await asyncio.wrap_future(future)
            except WorkerGone as err:
                outcomes = self._pool._render_here(part, err)
            for outcome in outcomes:
                yield outcome


class _Feeder:
    """One worker process and the thread here that feeds it slices and takes them back."""

    def __init__(
        self,
        context: multiprocessing.context.ForkServerContext,
        config: Config,
        tasks: "queue.SimpleQueue[_Task | None]",
        ended: Callable[[], None],
    ) -> None:
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, config), daemon=True)
        self._process.start()
        child.close()
        self.pid = self._process.pid or 0
        self._tasks = tasks
        self._ended = ended
        self._known: set[int] = set()  # the seqs of the papers the worker holds
        self._thread = threading.Thread(target=self._feed, name="render-feeder", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while (task := self._tasks.get()) is not None:
            part, future = task
            try:
                data, papers = _dumps(part)
            except Exception as err:  # what cannot cross the pipe is rendered in the main process
                future.set_exception(WorkerGone(f"cannot hand digests to a worker: {err}"))
                continue
            try:
                self._conn.send(self._new(papers))
                self._conn.send_bytes(data)
                future.set_result(_outcomes(part, self._conn.recv()))
            except (EOFError, OSError) as err:  # the worker is gone: this slice comes back
                future.set_exception(WorkerGone(f"a render worker ended ({err or 'EOF'})"))
                self._ended()
                return

    def _new(self, papers: dict[int, PaperRow]) -> list[PaperRow]:
        """The ``papers`` this worker was not sent yet (it keeps every one)."""
        fresh = [paper for seq, paper in papers.items() if seq not in self._known]
        self._known.update(papers)
        return fresh

    def close(self) -> None:
        self._thread.join(timeout=10)
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(conn: Connection, config: Config) -> None:
    """A worker: render each slice it is sent until the pipe closes or None arrives.

    A slice comes as the papers not sent before, then the contents, which name each
    paper by its seq (``_dumps``); what goes back is what the main process does not have
    (``_Result``): the bytes, and how many papers fitted.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(*WORKER_GC)
    _lower_priority()
    renderer = Renderer(config)
    papers: dict[int, PaperRow] = {}
    while True:
        try:
            papers.update((p.seq, p) for p in conn.recv())
            part = _loads(conn.recv_bytes(), papers)
        except EOFError:
            return
        conn.send([_result(render_one(renderer, content)) for content in part])


def _lower_priority() -> bool:
    """Lower this worker's priority by ``WORKER_NICE``; where a sandbox forbids it (the
    units in ``deploy/`` allow it), render at the same priority: slower, not broken."""
    try:
        os.nice(WORKER_NICE)
    except OSError:
        return False
    return True


# the pipe: each paper crosses it once per worker, and each rendered content not at all ----

_Result = tuple[int, bytes, Packed] | Unrendered  # (papers kept, message, packed) or why not


class _Pickler(pickle.Pickler):
    """Writes each paper as its seq, and notes the papers it met; every other dataclass
    as its field values (``pickle``'s own way for slots dataclasses asks
    ``dataclasses.fields`` at each object: a third of what the feeders cost)."""

    def __init__(self, out: io.BytesIO) -> None:
        super().__init__(out, pickle.HIGHEST_PROTOCOL)
        self.papers: dict[int, PaperRow] = {}

    def persistent_id(self, obj: object) -> int | None:
        if type(obj) is not PaperRow:
            return None
        self.papers[obj.seq] = obj
        return obj.seq

    def reducer_override(self, obj: object) -> Any:
        names = _field_names(type(obj))
        if names is None:
            return NotImplemented
        return _rebuilt, (type(obj), tuple(getattr(obj, name) for name in names))


def _field_names(kind: type) -> tuple[str, ...] | None:
    """The fields of a dataclass type, else None."""
    if kind not in _FIELDS:
        is_dataclass = dataclasses.is_dataclass(kind)
        _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind)) if is_dataclass else None
    return _FIELDS[kind]


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _rebuilt(kind: type[T], values: tuple[object, ...]) -> T:
    """A dataclass from its field values, as ``pickle`` restores one (no ``__init__``)."""
    obj = object.__new__(kind)
    for name, value in zip(_field_names(kind) or (), values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, papers: dict[int, PaperRow]) -> None:
        super().__init__(io.BytesIO(data))
        self.papers = papers

    def persistent_load(self, pid: object) -> PaperRow:
        return self.papers[pid]  # type: ignore[index]


def _dumps(part: list[DigestContent]) -> tuple[bytes, dict[int, PaperRow]]:
    """The contents with each paper as its seq, and those papers (the worker must have
    them first: ``_Feeder._new``)."""
    out = io.BytesIO()
    pickler = _Pickler(out)
    pickler.dump(part)
    return out.getvalue(), pickler.papers


def _loads(data: bytes, papers: dict[int, PaperRow]) -> list[DigestContent]:
    loaded: list[DigestContent] = _Unpickler(data, papers).load()
    return loaded


def _result(outcome: Outcome) -> _Result:
    if isinstance(outcome, Unrendered):
        return outcome
    return len(outcome.content.matches), outcome.data, outcome.packed


def _outcomes(part: list[DigestContent], results: list[_Result]) -> list[Outcome]:
    """Each result as the outcome ``render_one`` gave, on this process's own contents."""
    return [
        result
        if isinstance(result, Unrendered)
        else Rendered(first(content, result[0]), *result[1:])
        for content, result in zip(part, results, strict=True)
    ]
