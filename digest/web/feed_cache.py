"""The feed cache: ``Feeds`` on a thread of its own, with gzip bytes and headers per body.

``digest.feeds.Feeds`` builds and caches the bytes and notices store changes by
itself; its store's SQLite connection must stay on the thread that opened it, so
it runs on one dedicated thread that owns that store.  A rebuild never blocks the
event loop, and the cache is shared by every request.  The event loop remembers for
a second of the app's clock what it was handed (``FRESH_SECONDS``), so a feed polled
by many readers costs no thread hop at all; changes made through this app are seen at
once (``forget``), changes by other processes within that second.  Beside each body this keeps
what serving it needs, computed once: the gzip bytes (level 6, fixed mtime, with
their own ETag ``"<etag>-gz"`` since they are another representation) and the
header lists of the plain, gzip and 304 answers.
"""

import asyncio
import gzip
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from digest.config import Config
from digest.errors import StoreError
from digest.feeds import FeedBody, Feeds, Format
from digest.store import Store

log = logging.getLogger(__name__)

GZIP_SUFFIX = '-gz"'
FRESH_SECONDS = 1.0  # how stale a served feed may be: a change elsewhere shows within this
RECENT_KEPT = 4096
VARIANTS_KEPT = 512  # as many as Feeds caches; the plain bytes are shared with it
Raw = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Variant:
    """One cached body with the headers of its answers: plain, gzip and 304."""

    body: FeedBody
    plain: Raw
    gzipped: bytes
    gzip_headers: Raw
    not_modified: Raw
    not_modified_gzip: Raw


class FeedRunner:
    """``Feeds`` on one thread of its own, with the gzip bytes and headers cached per ETag."""

    def __init__(
        self, config: Config, open_store: Callable[[], Store], clock: Callable[[], datetime]
    ) -> None:
        self._config = config
        self._open = open_store
        self._clock = clock
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="digest-feeds")
        self._store: Store | None = None
        self._feeds: Feeds | None = None
        self._variants: OrderedDict[tuple[str, bool], Variant] = OrderedDict()
        self._recent: dict[tuple[str, str, Format], tuple[datetime, Variant]] = {}
        max_age = config.web.feed_max_age_seconds
        self._cache_control = {
            False: f"public, max-age={max_age}".encode(),
            True: f"private, max-age={max_age}".encode(),
        }

    async def get(self, kind: str, key: str, fmt: Format) -> Variant | None:
        """The feed ``kind`` ("all", "topic", "private") named ``key``; None when unknown.

        A body handed out less than ``FRESH_SECONDS`` ago (by the app's clock) is handed
        out again without asking the feeds thread: a hot feed then costs a dictionary
        lookup.  A clock set back makes it ask again rather than keep the body longer.
        """
        wanted = (kind, key, fmt)
        now = self._clock()
        recent = self._recent  # forget() replaces it: what was fetched before is dropped
        seen = recent.get(wanted)
        if seen is not None and 0 <= (now - seen[0]).total_seconds() < FRESH_SECONDS:
            return seen[1]
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._pool, self._get, kind, key, fmt)
        if found is not None:
            if len(recent) >= RECENT_KEPT:
                recent.clear()
            recent[wanted] = (now, found)
        return found

    def forget(self) -> None:
        """Drop the recent bodies (from any thread): a filter changed here, show it at once."""
        self._recent = {}

    async def start(self) -> None:
        """Open the store and check the topics now, so a bad ``[[topics]]`` stops the start.

        A database that cannot be opened yet is only logged: each feed request retries
        (and answers 503 meanwhile), and ``/healthz`` says what is wrong.
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._start)
        except StoreError as err:
            log.error("feeds: %s", err)

    def close(self) -> None:
        """Close the feeds' store on its own thread, then stop the thread."""
        self._pool.submit(self._close).result()
        self._pool.shutdown(wait=True)

    # on the feeds thread ---------------------------------------------------------------

    def _get(self, kind: str, key: str, fmt: Format) -> Variant | None:
        feeds = self._feeds or self._start()
        if kind == "all":
            body: FeedBody | None = feeds.public(fmt)
        elif kind == "topic":
            body = feeds.topic(key, fmt)
        else:
            body = feeds.private(key, fmt)
        if body is None:
            return None
        private = kind == "private"
        found = self._variants.get((body.etag, private))
        if found is not None:
            self._variants.move_to_end((body.etag, private))
        else:
            found = self._variants[body.etag, private] = self._variant(body, private)
            if len(self._variants) > VARIANTS_KEPT:
                self._variants.popitem(last=False)
        return found

    def _start(self) -> Feeds:
        store = self._open()
        try:
            self._feeds = Feeds(store, self._config, clock=self._clock)
        except BaseException:
            store.close()
            raise
        self._store = store
        return self._feeds

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = self._feeds = None

    def _variant(self, body: FeedBody, private: bool) -> Variant:
        gzipped = gzip.compress(body.data, compresslevel=6, mtime=0)
        gzip_etag = body.etag[:-1] + GZIP_SUFFIX
        common = [
            (b"cache-control", self._cache_control[private]),
            (b"last-modified", format_datetime(body.last_modified, usegmt=True).encode()),
            (b"vary", b"Accept-Encoding"),
            (b"x-content-type-options", b"nosniff"),
        ]
        media = (b"content-type", body.media_type.encode())
        plain_etag = (b"etag", body.etag.encode())
        gz_etag = (b"etag", gzip_etag.encode())
        return Variant(
            body=body,
            plain=[*common, plain_etag, media, (b"content-length", b"%d" % len(body.data))],
            gzipped=gzipped,
            gzip_headers=[
                *common,
                gz_etag,
                media,
                (b"content-encoding", b"gzip"),
                (b"content-length", b"%d" % len(gzipped)),
            ],
            not_modified=[*common, plain_etag],
            not_modified_gzip=[*common, gz_etag],
        )
