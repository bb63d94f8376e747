"""Feeds: ``/feeds/all.atom`` served by uvicorn to a concurrent local client, next to a bare route.

What is measured: requests/s of ``GET /feeds/all.atom`` (the 50-entry Atom
feed, about 92 KB, of 2,000 papers ingested from a generated dump) from 8
keep-alive connections on loopback, 3,000 requests per measurement, in two
kinds: full GETs (200 with the whole body) and conditional GETs
(``If-None-Match`` with the feed's ETag) answered ``304``.  The server is the
real ``digest.web.create_app`` under uvicorn (``digest serve``'s proxy and
server-header settings, no access log) in a process of its own, so the client
does not compete with it for the GIL; its feed route answers from the feed
cache (``feed_cache``): the bytes built once with feedgen, rebuilt only when an
ingest changes the store.  Every response is checked: its status, its ETag,
and for a 200 that the body is byte for byte the feed.  The client is a plain
asyncio HTTP/1.1 client written here (it sends a request, reads the head and
``Content-Length`` bytes) and asks for no compression: httpx spends several
times the server's CPU per request, so with it both rates would be the
client's and the ratio meaningless.  Beside each rate are the server's CPU
time per request and how busy it was (below 100% when other work shares the
machine), and the ratio of CPU per request, which is steadier than rates.

Why this ceiling: for a cached feed, what remains of a request is the HTTP
server (uvicorn and h11 parsing the request, writing the response) and the
framework (Starlette's middleware and routing), which digest cannot avoid.
The ceiling is a bare Starlette route added to the *same* app in the same
server process (first in the route list), returning the same bytes with the
same media type and ETag, and ``304`` when ``If-None-Match`` equals that ETag:
one ``if`` on the header and a plain ``Response``, with nothing to look up.
Feed and bare route are measured alternately (the order flips each round), on
fresh connections, and the best of 3 rounds of each is kept (noise only slows
down).  Target (acceptance): at least 50% of the bare route's requests/s, for
full GETs and for 304s.  Peak memory is the server process's peak RSS
(``VmHWM``) over the whole run.

For scale: building the same feed without the cache (the trending query and
the fetch of its papers, then feedgen and the hash), which every request would
cost otherwise; and a check that the cache is invalidated by an ingest: after
a second dump is ingested by this process (another process to the server, as
the scheduler is), the served feed must become the newly built one within a
few seconds.
"""

import asyncio
import cProfile
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TypeVar

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench import MB, BenchError, Figure, Settings, Target
from bench.workload import build_store, ingest, note, utc_now, workdir, write_papers
from digest.config import Config
from digest.feeds import FeedBody, Feeds
from digest.store import Store
from digest.web import create_app

STAGE = "feeds"
ROOT = Path(__file__).resolve().parent.parent
FULL_REQUESTS = 3_000  # per measurement
WARMUP_REQUESTS = 300
CONNECTIONS = 8
PAPERS = 2_000
MIN_PAPERS = 200  # the feed keeps its 50 entries however small the run
NEW_PAPERS = 100  # the second dump, ingested to check that the cache is invalidated
ROUNDS = 3
BUILDS = 20  # uncached builds timed, best kept
PROFILE_REQUESTS = 1_000  # of each kind, on the feed route of a separate, profiled server
TARGET = Target(min_ratio=0.50)
UNIT = "requests/s"
HOST = "127.0.0.1"
FEED_PATH = "/feeds/all.atom"
BARE_PATH = "/bare/all.atom"
SECRET = "bench-feeds-signing-key-" + "x" * 24
START_SECONDS = 30.0
STOP_SECONDS = 10.0
REQUEST_SECONDS = 10.0  # one request outside the measurements
MEASURE_SECONDS = 120.0  # one measurement: a stuck server fails the stage instead of hanging it
INVALIDATED_SECONDS = 10.0
HEAD_END = b"\r\n\r\n"
T = TypeVar("T")

# The server process: ``serve`` below, imported from this checkout.
_SERVER = "import sys; from bench.feeds import serve; serve(sys.argv[1:])"


# the server process ---------------------------------------------------------------


def serve(argv: Sequence[str]) -> None:
    """In the server process: digest's app plus the bare route, on the inherited socket.

    ``argv``: the database, the listening socket's file descriptor, and a path to
    write a cProfile of the whole server to ("" for none).
    """
    database, fd, profile_path = Path(argv[0]), int(argv[1]), argv[2]
    signal.signal(signal.SIGTERM, _exit)  # uvicorn re-raises it after a clean shutdown
    config = Config()
    store = Store(database)
    try:
        body = Feeds(store, config).public("atom")
    finally:
        store.close()
    app = create_app(config, database, secret=SECRET)
    app.router.routes.insert(0, Route(BARE_PATH, bare_endpoint(body)))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            proxy_headers=True,  # as ``digest serve``
            server_header=False,
        )
    )
    profiler = cProfile.Profile() if profile_path else None
    try:
        if profiler is not None:
            profiler.enable()
        server.run(sockets=[socket.socket(fileno=fd)])
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)


def bare_endpoint(body: FeedBody) -> Callable[[Request], Awaitable[Response]]:
    """The ceiling: the same bytes, media type and ETag; 304 when If-None-Match is that ETag."""
    data, etag, media_type = body.data, body.etag, body.media_type
    headers = {"etag": etag}

    async def bare(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media_type, headers=headers)

    return bare


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@dataclass
class Server:
    """The server process, its port, and where its output goes."""

    process: "subprocess.Popen[bytes]"
    port: int
    log: Path

    def cpu_seconds(self) -> float:
        """The server's user + system CPU time so far (``/proc/<pid>/stat``)."""
        fields = proc_text(self.process.pid, "stat").rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_mb(self) -> float:
        """The server's peak resident memory (``VmHWM``), in MB."""
        for line in proc_text(self.process.pid, "status").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
        raise BenchError("no VmHWM in /proc/<pid>/status")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return ""


def proc_text(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(encoding="ascii")
    except OSError as err:
        raise BenchError(f"cannot read /proc/{pid}/{name}: {err.strerror}") from None


def start_server(folder: Path, database: Path, profile_path: Path | None) -> Server:
    """Start the server process on a loopback socket bound here; return once it answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    log = folder / "server.log"
    try:
        sock.bind((HOST, 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        argv = [str(database), str(sock.fileno()), str(profile_path or "")]
        env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _SERVER, *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
            )
    finally:
        sock.close()
    server = Server(process, port, log)
    try:
        wait_until_serving(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + START_SECONDS
    request = http_request(server.port, BARE_PATH)
    while True:
        if server.process.poll() is not None:
            raise BenchError(f"the server exited {server.process.returncode}: {server.log_tail()}")
        try:
            asyncio.run(asyncio.wait_for(fetch(server.port, request), REQUEST_SECONDS))
            return
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the server did not answer within {START_SECONDS:.0f} s: {server.log_tail()}"
                ) from None
            time.sleep(0.05)


def stop_server(server: Server) -> None:
    """SIGTERM (uvicorn shuts down cleanly), then SIGKILL if it does not stop in time."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# the client -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expect:
    """What every response must be: its status, its ETag, and for a 200 the body."""

    status: int
    etag: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class Timing:
    """One measurement: requests answered, wall time, CPU time of the server and client."""

    requests: int
    seconds: float
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def server_us(self) -> float:
        """The server's CPU time per request, in µs."""
        return self.server_cpu / self.requests * 1e6

    @property
    def busy(self) -> float:
        """How busy the server was: CPU time over wall time (1.0: one core all the time)."""
        return self.server_cpu / self.seconds


def http_request(port: int, path: str, etag: str | None = None) -> bytes:
    """A GET with no Accept-Encoding (plain bytes from both routes), conditional with ``etag``."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "User-Agent: digest-bench"]
    if etag is not None:
        lines.append(f"If-None-Match: {etag}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def fetch(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """One request on a fresh connection: status, ETag and body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()
        await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """The status, ETag and body of one HTTP/1.1 response (``Content-Length`` framing)."""
    head = (await reader.readuntil(HEAD_END)).lower()
    status = int(head[9:12])
    etag = _header(head, b"etag")
    length = _header(head, b"content-length")
    if length:
        return status, etag, await reader.readexactly(int(length))
    if status != 304 and status >= 200 and status != 204:
        raise BenchError(f"a {status} without Content-Length: {head[:500]!r}")
    return status, etag, b""


def _header(head: bytes, name: bytes) -> bytes:
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 3
    return head[start : head.index(b"\r\n", start)].strip()


async def hammer(port: int, request: bytes, expect: Expect, count: int) -> float:
    """``count`` requests over ``CONNECTIONS`` keep-alive connections; the seconds they took.

    The connections are opened before the clock starts.  Every response is checked.
    """
    connections = [await asyncio.open_connection(HOST, port) for _ in range(CONNECTIONS)]
    left = count

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            writer.write(request)
            got = await read_response(reader)
            if got != (expect.status, expect.etag, expect.body):
                raise BenchError(
                    f"expected {expect.status} with ETag {expect.etag!r} and "
                    f"{len(expect.body):,} bytes, got {got[0]} with ETag {got[1]!r} and "
                    f"{len(got[2]):,} bytes"
                )

    try:
        start = time.perf_counter()
        async with asyncio.timeout(MEASURE_SECONDS):
            await asyncio.gather(*(worker(r, w) for r, w in connections))
        return time.perf_counter() - start
    finally:
        for _, writer in connections:
            writer.close()
        for _, writer in connections:
            with suppress(OSError):
                await writer.wait_closed()


def measure(server: Server, request: bytes, expect: Expect, count: int) -> Timing:
    server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    seconds = on_server(server, hammer(server.port, request, expect, count))
    return Timing(
        count,
        seconds,
        server.cpu_seconds() - server_cpu,
        time.process_time() - client_cpu,
    )


def on_server(server: Server, work: Coroutine[object, object, T]) -> T:
    """Run the client ``work``; a broken connection or a timeout is a BenchError."""
    try:
        return asyncio.run(work)
    except (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError) as err:
        raise BenchError(
            f"talking to the server on port {server.port}: {err!r}; "
            f"server exit status {server.process.poll()}: {server.log_tail()}"
        ) from None


# the stage ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """The best timing of the feed route and of the bare route, for one kind of request."""

    feed: Timing
    bare: Timing


@dataclass(frozen=True, slots=True)
class Build:
    """The best uncached build of the feed, and the best of its store queries alone, in ms."""

    total_ms: float
    query_ms: float


@dataclass(frozen=True, slots=True)
class Results:
    full: Pair
    not_modified: Pair
    body: FeedBody
    build: Build
    invalidated_seconds: float
    peak_mb: float
    rounds: int


def run(settings: Settings) -> list[Figure]:
    """Seed a store, start the server, time both routes in rounds, check invalidation."""
    count = settings.size(FULL_REQUESTS)
    with workdir(settings, STAGE) as folder:
        results = measure_all(folder, count, settings)
    return figures(count, results, full=count >= FULL_REQUESTS)


def measure_all(folder: Path, count: int, settings: Settings) -> Results:
    config = Config()
    now = utc_now()
    papers = write_papers(folder, max(MIN_PAPERS, settings.size(PAPERS)), NEW_PAPERS, settings.seed)
    database = folder / "digest.db"
    store = build_store(database, papers, now - timedelta(days=1), new=False)
    try:
        feeds = Feeds(store, config)
        body = feeds.public("atom")
        check_feed(config, body)
        build = time_builds(store, feeds, config.feeds.max_entries)
        note(
            STAGE,
            f"{papers.old.entries:,} papers; {FEED_PATH}: {body.entries} entries, "
            f"{len(body.data) / 1000:,.1f} KB, built uncached in {build.total_ms:.2f} ms",
        )
        server = start_server(folder, database, None)
        try:
            full, not_modified = measure_rounds(server, body, count, settings.rounds(ROUNDS))
            ingest(store, papers.new, now)
            fresh = Feeds(store, config).public("atom")
            invalidated = check_invalidated(server, body, fresh)
            peak_mb = server.peak_mb()
        finally:
            stop_server(server)
        if settings.profile:
            profile_server(folder, database, fresh)
    finally:
        store.close()
    return Results(full, not_modified, body, build, invalidated, peak_mb, settings.rounds(ROUNDS))


def check_feed(config: Config, body: FeedBody) -> None:
    wanted = config.feeds.max_entries
    if body.entries != wanted or body.data.count(b"<entry>") != wanted:
        raise BenchError(f"the feed has {body.entries} entries, expected {wanted}")


def time_builds(store: Store, feeds: Feeds, limit: int) -> Build:
    """The best of ``BUILDS`` uncached builds of the feed (what the cache saves).

    The queries alone are ``Feeds``' trending query and the fetch of those papers;
    the rest of a build is feedgen and the hash.
    """
    total = query = float("inf")
    for _ in range(BUILDS):
        feeds.invalidate()
        start = time.perf_counter()
        feeds.public("atom")
        total = min(total, time.perf_counter() - start)
        start = time.perf_counter()
        store.papers(seqs=store.trending_seqs(limit))
        query = min(query, time.perf_counter() - start)
    return Build(total * 1000, query * 1000)


def plan(port: int, body: FeedBody) -> dict[tuple[str, str], tuple[bytes, Expect]]:
    """The request and the expected response of each (kind, route)."""
    etag = body.etag
    full = Expect(200, etag.encode(), body.data)
    not_modified = Expect(304, etag.encode(), b"")
    return {
        ("full", "feed"): (http_request(port, FEED_PATH), full),
        ("full", "bare"): (http_request(port, BARE_PATH), full),
        ("304", "feed"): (http_request(port, FEED_PATH, etag), not_modified),
        ("304", "bare"): (http_request(port, BARE_PATH, etag), not_modified),
    }


def measure_rounds(server: Server, body: FeedBody, count: int, rounds: int) -> tuple[Pair, Pair]:
    """Full and 304 GETs on both routes, the order flipped each round; the best of each."""
    requests = plan(server.port, body)
    warmup = min(count, WARMUP_REQUESTS)
    for request, expect in requests.values():
        measure(server, request, expect, warmup)
    best: dict[tuple[str, str], Timing] = {}
    for number in range(1, rounds + 1):
        routes = ("feed", "bare") if number % 2 else ("bare", "feed")
        line = []
        for kind in ("full", "304"):
            for route in routes:
                request, expect = requests[kind, route]
                timing = measure(server, request, expect, count)
                key = (kind, route)
                if key not in best or timing.rate > best[key].rate:
                    best[key] = timing
                line.append(f"{kind} {route} {timing.rate:,.0f}")
        note(STAGE, f"round {number}/{rounds} ({UNIT}): {', '.join(line)}")
    return (
        Pair(best["full", "feed"], best["full", "bare"]),
        Pair(best["304", "feed"], best["304", "bare"]),
    )


def check_invalidated(server: Server, old: FeedBody, new: FeedBody) -> float:
    """Seconds until the served feed is the one built after the ingest (the cache dropped)."""
    if new.etag == old.etag:
        raise BenchError("the second dump did not change the feed: cannot check invalidation")
    request = http_request(server.port, FEED_PATH)
    start = time.perf_counter()
    while True:
        status, etag, data = on_server(
            server, asyncio.wait_for(fetch(server.port, request), REQUEST_SECONDS)
        )
        waited = time.perf_counter() - start
        if status == 200 and etag == new.etag.encode() and data == new.data:
            return waited
        if status != 200 or etag != old.etag.encode():
            raise BenchError(f"after the ingest the feed answered {status} with ETag {etag!r}")
        if waited > INVALIDATED_SECONDS:
            raise BenchError(f"the feed still served the old bytes {waited:.1f} s after an ingest")
        time.sleep(0.05)


def profile_server(folder: Path, database: Path, body: FeedBody, top: int = 25) -> None:
    """A second server under cProfile, driven on the feed route; its top functions.

    Apart from the measured one, so that the profiler does not slow the figures.
    """
    path = folder / "server.prof"
    server = start_server(folder, database, path)
    try:
        requests = plan(server.port, body)
        for kind in ("full", "304"):
            measure(server, *requests[kind, "feed"], PROFILE_REQUESTS)
    finally:
        stop_server(server)
    if not path.exists():
        raise BenchError(f"the profiled server wrote no profile: {server.log_tail()}")
    what = f"the server process ({PROFILE_REQUESTS:,} full and {PROFILE_REQUESTS:,} 304 GETs)"
    for order in (pstats.SortKey.CUMULATIVE, pstats.SortKey.TIME):
        print(f"\n[{STAGE}] cProfile of {what}, top {top} by {order.value}:")
        stats = pstats.Stats(str(path), stream=sys.stdout)
        stats.strip_dirs().sort_stats(order).print_stats(top)


# the figures ----------------------------------------------------------------------


def figures(count: int, results: Results, *, full: bool) -> list[Figure]:
    body = results.body
    rounds = f"best of {results.rounds}" if results.rounds > 1 else "1 round"
    size = f"{body.entries} entries, {len(body.data) / 1000:,.1f} KB"
    setup = f"{count:,} requests on {CONNECTIONS} connections, {rounds}"
    return [
        Figure(
            STAGE,
            f"full GET {FEED_PATH} ({size})",
            results.full.feed.rate,
            UNIT,
            ceiling=results.full.bare.rate,
            peak_mb=results.peak_mb,
            target=TARGET,
            note=f"{setup}; {_cpu(results.full.feed)}; {_cpu_ratio(results.full)}; "
            "peak = server process VmHWM",
            full_scale=full,
        ),
        Figure(
            STAGE,
            f"conditional GET {FEED_PATH} answered 304",
            results.not_modified.feed.rate,
            UNIT,
            ceiling=results.not_modified.bare.rate,
            peak_mb=results.peak_mb,
            target=TARGET,
            note=f"{setup}; {_cpu(results.not_modified.feed)}; {_cpu_ratio(results.not_modified)}",
            full_scale=full,
        ),
        Figure(
            STAGE,
            "ceiling: bare Starlette route in the same app, same bytes (full GET)",
            results.full.bare.rate,
            UNIT,
            note=_cpu(results.full.bare),
        ),
        Figure(
            STAGE,
            "ceiling: bare Starlette route in the same app, 304",
            results.not_modified.bare.rate,
            UNIT,
            note=_cpu(results.not_modified.bare),
        ),
        Figure(
            STAGE,
            "for scale: the same feed built without the cache (query + feedgen + hash)",
            results.build.total_ms,
            "ms",
            note=f"best of {BUILDS}; of which the store queries {results.build.query_ms:.2f} ms, "
            f"feedgen and hash {results.build.total_ms - results.build.query_ms:.2f} ms; "
            "not a target; after an ingest by another process the "
            f"server served the new feed within {results.invalidated_seconds:.2f} s",
        ),
    ]


def _cpu(timing: Timing) -> str:
    return (
        f"server {timing.server_us:,.0f} µs CPU/request, {timing.busy:.0%} busy; "
        f"client {timing.client_cpu / timing.requests * 1e6:,.0f} µs CPU/request"
    )


def _cpu_ratio(pair: Pair) -> str:
    """The same comparison by the server's CPU per request, steadier than rates on a busy box."""
    return (
        f"by server CPU/request {pair.bare.server_us / pair.feed.server_us:.0%} of the bare route"
    )
