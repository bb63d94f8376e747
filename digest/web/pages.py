"""Read-only pages: one paper with its trend history, and the health checks.

``/healthz`` says whether the service can read its database, how fresh the
papers are and how many dumps were rejected (``{"status", "papers", "last_ingest",
"rejected_dumps", "last_rejection"}``, 503 when the database cannot be read): the
operator's view, where rejections belong (readers' digests never mention them);
``/readyz`` only checks that the database answers, for a load balancer
or ``systemd`` to wait on.
"""

import logging
import re
import sqlite3

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digest.errors import DigestError
from digest.models import paper_url
from digest.web.state import web_of

PAPER_ID = re.compile(r"[0-9a-f]{16}")
NO_CACHE = {"Cache-Control": "no-store"}
log = logging.getLogger(__name__)


def paper(request: Request) -> Response:
    web = web_of(request)
    ref = request.path_params["id"]
    found = None
    if PAPER_ID.fullmatch(ref):
        with web.store() as store:
            found = store.paper(ref)
            history = store.sightings(found.seq) if found else []
    if found is None:
        return web.views.message(
            "No such paper", "We have no paper with this id.", status=404, links=[("/", "Home")]
        )
    return web.views.page(
        "paper",
        title=found.title,
        paper=found,
        url=paper_url(web.config.digest.paper_url, found.title),
        sightings=history,
        cache="public, max-age=300",
    )


def healthz(request: Request) -> Response:
    web = web_of(request)
    try:
        with web.store() as store:
            papers = store.count("papers")
            last = store.last_ingest_at()
            rejected, last_rejection = store.rejections_summary()
    except (DigestError, OSError, sqlite3.Error) as err:
        log.error("health check: %s", err)
        unknown = dict.fromkeys(["papers", "last_ingest", "rejected_dumps", "last_rejection"])
        return JSONResponse({"status": "error", **unknown}, 503, headers=NO_CACHE)
    body = {
        "status": "ok",
        "papers": papers,
        "last_ingest": last,
        "rejected_dumps": rejected,
        "last_rejection": last_rejection,
    }
    return JSONResponse(body, headers=NO_CACHE)


def readyz(request: Request) -> Response:
    web = web_of(request)
    try:
        with web.store() as store:
            store.last_ingest_at()
    except (DigestError, OSError, sqlite3.Error) as err:
        log.error("readiness check: %s", err)
        return JSONResponse({"status": "error"}, 503, headers=NO_CACHE)
    return JSONResponse({"status": "ready"}, headers=NO_CACHE)
