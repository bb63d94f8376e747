"""The ASGI app: its state, its routes, and the pages shown for errors.

Starlette on uvicorn: a small, well-kept ASGI stack -- plain functions as
routes, a real HTTP/1.1 server, few dependencies, sync handlers run in a thread
pool (the store is synchronous SQLite) while the feed routes stay async.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.config import Config
from digest.errors import StoreError
from digest.mailer import Transport, transport_for
from digest.render import Renderer
from digest.store import Identity, Store
from digest.web import (
    feed_routes,
    feedback_routes,
    health_routes,
    manage_routes,
    paper_routes,
    subscribe_routes,
)
from digest.web.feed_cache import FeedRunner
from digest.web.forms import MAX_FORM_BYTES
from digest.web.security import ConfirmTokens, Csrf, RateLimit
from digest.web.state import HOUR, PREVIEW_WINDOW, Web, web_of
from digest.web.templating import PageTemplates

log = logging.getLogger(__name__)
TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
}


def create_app(
    config: Config,
    store_path: Path | None = None,
    *,
    secret: str,
    clock: Callable[[], datetime] | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    identity: Identity | None = None,
) -> Starlette:
    """The web front for ``config``; ``store_path`` overrides ``[storage] database``."""
    database = store_path or config.storage.database
    now = clock or (lambda: datetime.now(UTC))
    web = Web(
        config=config,
        database=database,
        clock=now,
        pages=PageTemplates(config),
        confirm=ConfirmTokens(secret, config.web.confirm_hours * HOUR, now),
        csrf=Csrf(secret, now),
        limit=RateLimit(config.web.subscribe_per_hour, HOUR, now),
        address_limit=RateLimit(config.web.subscribe_per_address_per_hour, HOUR, now),
        preview_limit=RateLimit(config.web.preview_per_10_minutes, PREVIEW_WINDOW, now),
        feeds=FeedRunner(config, lambda: Store(database, create=False), now),
        renderer=Renderer(config),
        transport_factory=transport_factory
        or (lambda: transport_for(config.delivery, config.smtp)),
        identity=identity,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await web.feeds.start()
        try:
            yield
        finally:
            web.feeds.close()

    app = Starlette(
        routes=routes(),
        exception_handlers={HTTPException: _http_error, StoreError: _store_error},
        lifespan=lifespan,
    )
    app.state.web = web
    return app


def routes() -> list[Route]:
    return [
        Route("/", subscribe_routes.home),
        _post("/subscribe", subscribe_routes.subscribe),
        Route("/confirm/{token}", subscribe_routes.confirm_page),
        _post("/confirm/{token}", subscribe_routes.confirm),
        Route("/manage/{token}", manage_routes.manage),
        _post("/manage/{token}", manage_routes.manage_post),
        Route("/unsubscribe/{token}", manage_routes.unsubscribe),
        _post("/unsubscribe/{token}", manage_routes.unsubscribe_post),
        Route("/feeds/topics/{name}", feed_routes.topic_feed),
        Route("/feeds/{name}", feed_routes.site_feed),
        Route("/papers/{id}", paper_routes.paper),
        Route("/matches/{token}/{mark}", paper_routes.matches),
        Route("/feedback/{token}/{paper}/{verdict}", feedback_routes.feedback_page),
        _post("/feedback/{token}/{paper}/{verdict}", feedback_routes.feedback_post),
        Route("/healthz", health_routes.healthz),
        Route("/readyz", health_routes.readyz),
    ]


def _post(path: str, endpoint: Callable[[Request], object]) -> Route:
    """A form target: POST only, the body capped before anything reads it."""
    return Route(path, endpoint, methods=["POST"], max_body_size=MAX_FORM_BYTES)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = TITLES.get(exc.status_code, "Something went wrong")
    text = "There is nothing at this address." if exc.status_code == 404 else exc.detail
    return web_of(request).pages.message(
        title, text, status=exc.status_code, links=[("/", "Start page")], headers=exc.headers
    )


def _store_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return PlainTextResponse("The database is not available; try again later.\n", 503)
