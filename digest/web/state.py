"""The app's state: config, clock, templates, tokens, rate limits, feeds and mail, built once.

Route handlers get it with ``web_of(request)``.  I/O is passed in (the clock,
the mail transport), so tests drive time and read the mail they caused.

SQLite connections belong to the thread that opened them, and sync handlers run
in a thread pool, so a handler opens the store for the length of one request
(``with web.store() as store``: about a millisecond) and closes it.  The feeds
keep their own store on their own thread (``feed_cache.FeedRunner``).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from starlette.requests import Request

from digest.config import Config
from digest.mailer import Transport
from digest.render import Renderer
from digest.store import Identity, Store
from digest.web.feed_cache import FeedRunner
from digest.web.security import Clock, ConfirmTokens, Csrf, RateLimit
from digest.web.templating import PageTemplates

HOUR = 3600
PREVIEW_WINDOW = 600  # [web] preview_per_10_minutes


@dataclass
class Web:
    config: Config
    database: Path
    clock: Clock
    pages: PageTemplates
    confirm: ConfirmTokens
    csrf: Csrf
    limit: RateLimit  # subscription requests per client address
    address_limit: RateLimit  # confirmation mails per recipient address
    preview_limit: RateLimit  # previews (backtests) per client address
    feeds: FeedRunner
    renderer: Renderer  # builds the confirmation mails
    transport_factory: Callable[[], Transport]
    identity: Identity | None = None  # the database the front was started on (healthz checks)

    @property
    def secure_cookies(self) -> bool:
        return self.config.web.base_url.startswith("https://")

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def store(self) -> Iterator[Store]:
        opened = Store(self.database, create=False)
        try:
            yield opened
        finally:
            opened.close()


def web_of(request: Request) -> Web:
    return cast(Web, request.app.state.web)
