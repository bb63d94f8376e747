"""Paper routes: one paper with its trend history, and the papers a digest had no room for.

``/matches/<feed token>/<digest mark>`` is where a digest's "N more papers match"
leads: the matches of that digest's window that it did not carry, which reach the
reader nowhere else (the next digest starts after them; the feed holds only the
newest few).  Who may read a private feed may read it, as long as they subscribe.
"""

import logging
import re

from starlette.requests import Request
from starlette.responses import Response

from digest import links, match
from digest.models import Subscriber
from digest.paper_links import paper_url
from digest.store import Store
from digest.web.state import web_of

PAPER_ID = re.compile(r"[0-9a-f]{16}")
DIGEST_MARK = re.compile(r"[0-9a-f]{16}")
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
        return web.pages.message(
            "No such paper", "We have no paper with this id.", status=404, links=[("/", "Home")]
        )
    return web.pages.page(
        "paper",
        title=found.title,
        paper=found,
        url=paper_url(web.config.digest.paper_url, found.title),
        sightings=history,
        cache="public, max-age=300",
    )


def matches(request: Request) -> Response:
    web = web_of(request)
    mark = request.path_params["mark"]
    with web.store() as store:
        reader = _feed_reader(store, request.path_params["token"])
        digest = reader and DIGEST_MARK.fullmatch(mark) and store.digest_by_mark(reader.id, mark)
        if reader is None or not digest:
            return web.pages.message(
                "No such digest",
                "This link does not lead to a digest of a current subscription.",
                status=404,
                links=[("/", "Home")],
            )
        found = match.beyond(store, reader, digest, web.config.digest)
    return web.pages.page(
        "matches",
        title=f"{len(found)} more paper{'' if len(found) == 1 else 's'} from your digest",
        papers=found,
        digest=digest,
        filter=reader.filter,
    )


def _feed_reader(store: Store, token: str) -> Subscriber | None:
    """The subscriber whose feed token this is, unless they have unsubscribed."""
    found = links.resolve(token, "feed", store.subscriber_by_id)
    return None if found is None or found.status == "unsubscribed" else found
