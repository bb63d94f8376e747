"""Health routes: ``/healthz`` for the operator, ``/readyz`` for a load balancer.

``/healthz`` says whether the service can read its database, how fresh the
papers are, how many dumps were rejected and how each source fares (``{"status",
"papers", "last_ingest", "rejected_dumps", "last_rejection", "sources"}``, 503
when the database cannot be read): the operator's view, where rejections belong
(readers' digests never mention them); ``/readyz`` only checks that the database
answers, for a load balancer or ``systemd`` to wait on.
"""

import logging
import sqlite3

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digest.errors import DigestError
from digest.store import SourceState
from digest.web.state import web_of

NO_CACHE = {"Cache-Control": "no-store"}
log = logging.getLogger(__name__)


def healthz(request: Request) -> Response:
    web = web_of(request)
    try:
        with web.store() as store:
            if web.identity is not None:
                store.check_identity(web.identity)
            papers = store.count("papers")
            last = store.last_ingest_at()
            rejected, last_rejection = store.rejections_summary()
            sources = {state.name: _source(state) for state in store.source_states()}
    except (DigestError, OSError, sqlite3.Error) as err:
        log.error("health check: %s", err)
        unknown = dict.fromkeys(
            ["papers", "last_ingest", "rejected_dumps", "last_rejection", "sources"]
        )
        return JSONResponse({"status": "error", **unknown}, 503, headers=NO_CACHE)
    body = {
        "status": "ok",
        "papers": papers,
        "last_ingest": last,
        "rejected_dumps": rejected,
        "last_rejection": last_rejection,
        "sources": sources,
    }
    return JSONResponse(body, headers=NO_CACHE)


def _source(state: SourceState) -> dict[str, object]:
    return {
        "last_success": state.last_success,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
        "failures": state.failures,
    }


def readyz(request: Request) -> Response:
    web = web_of(request)
    try:
        with web.store() as store:
            store.last_ingest_at()
    except (DigestError, OSError, sqlite3.Error) as err:
        log.error("readiness check: %s", err)
        return JSONResponse({"status": "error"}, 503, headers=NO_CACHE)
    return JSONResponse({"status": "ready"}, headers=NO_CACHE)
