"""Rendering on every core: digests rendered and packed for the store in worker processes.

Rendering and serialising a message is most of what a send costs, and one
Python process renders on one core.  ``RenderPool`` hands each digest's
``DigestContent`` (what the templates need, matched spans included) to worker
processes, which fit it under the size limit, render it and pack it the
store's way (``digest.store.pack``); the main process meanwhile matches the
next subscribers and records the last ones.  Results come back in the order given.
A worker sends back only how many papers fitted and the packed bytes: the main
process has the rest already (a whole ``Rendered`` pickled cost each side
0.15 ms a digest, and put 84 KB a digest on the pipe instead of 11).

Each worker has a pipe of its own and a feeding thread here, which sends it a
slice of contents and waits for the slice rendered.  A worker that dies (killed,
out of memory) closes its pipe, so its thread sees it at once: that slice and
every later one are rendered in the main process instead, with a warning.
(``ProcessPoolExecutor`` was tried first: when a worker is killed while its
queue's pipe is full, its feeder thread blocks for good and the process never exits.)

A worker ignores SIGTERM and SIGINT: systemd signals the whole service, and the
main process decides when to stop (it takes back the slices in hand, then ends
the workers).  What one content does fails only that digest (``Unrendered``).
"""

import logging
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection

from digest.config import Config
from digest.match import compile_filter, highlighted, shared_stemmer
from digest.render import DigestContent, Renderer, first
from digest.reports import failure_reason
from digest.store import Packed, pack, unpack

SLICE = 20  # digests per round trip: fewer of them, and still an even share for each worker
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


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a worker sends back of a ``Rendered``: the papers that fitted, and its bytes
    packed.  The spans it found for them stay in the worker: nothing after rendering
    uses them."""

    kept: int
    packed: Packed


Outcome = Rendered | Unrendered
_Reply = _Sent | Unrendered
_Task = tuple[list[DigestContent], "Future[list[_Reply]]"]


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
    the last step of matching, done here so that it runs on every core too."""
    node = compile_filter(content.subscriber.filter)
    return replace(content, matches=highlighted(node, content.matches, shared_stemmer()))


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

    def submit(self, contents: Sequence[DigestContent]) -> Iterator[Outcome]:
        """Start rendering ``contents``; the iterator yields them in order as they come."""
        slices = [list(contents[i : i + SLICE]) for i in range(0, len(contents), SLICE)]
        futures: list[Future[list[_Reply]]] = []
        for part in slices:
            future: Future[list[_Reply]] = Future()
            with self._lock:
                if self._alive:
                    self._tasks.put((part, future))
                else:
                    future.set_exception(WorkerGone("no render worker is running"))
            futures.append(future)
        return self._outcomes(slices, futures)

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

    def _outcomes(
        self, slices: list[list[DigestContent]], futures: list["Future[list[_Reply]]"]
    ) -> Iterator[Outcome]:
        for part, future in zip(slices, futures, strict=True):
            try:
                replies = future.result()
            except WorkerGone as err:
                yield from self._render_here(part, err)
            else:
                yield from map(_received, part, replies)

    def _render_here(self, part: list[DigestContent], why: WorkerGone) -> list[Outcome]:
        if self._inline is None:
            log.warning("rendering the rest in the main process: %s", why)
            self._inline = Renderer(self.config)
        return [render_one(self._inline, content) for content in part]


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
        self._thread = threading.Thread(target=self._feed, name="render-feeder", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while (task := self._tasks.get()) is not None:
            part, future = task
            try:
                self._conn.send(part)
                future.set_result(self._conn.recv())
            except (EOFError, OSError) as err:  # the worker is gone: this slice comes back
                future.set_exception(WorkerGone(f"a render worker ended ({err or 'EOF'})"))
                self._ended()
                return

    def close(self) -> None:
        self._thread.join(timeout=10)
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(conn: Connection, config: Config) -> None:
    """A worker: render each slice it is sent until the pipe closes or None arrives."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    renderer = Renderer(config)
    while True:
        try:
            part = conn.recv()
        except EOFError:
            return
        conn.send([_sent(render_one(renderer, content)) for content in part])


def _sent(outcome: Outcome) -> _Reply:
    if isinstance(outcome, Unrendered):
        return outcome
    return _Sent(len(outcome.content.matches), outcome.packed)


def _received(content: DigestContent, reply: _Reply) -> Outcome:
    """The outcome a worker's reply stands for, from the content it was given."""
    if isinstance(reply, Unrendered):
        return reply
    return Rendered(first(content, reply.kept), unpack(reply.packed), reply.packed)
