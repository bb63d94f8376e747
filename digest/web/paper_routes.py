"""Paper routes: one paper with its trend history, and the papers a digest had no room for.

``/papers/<id>`` is public and cached; opened as ``/papers/<id>?reader=<feed token>``
(the links of a reader's ``/matches`` and feedback pages) it also shows that reader's
"More like this" and "Not for me" buttons, which POST to their signed feedback links,
and is not cached.  A token that is not a current reader's shows the public page.

``/matches/<feed token>/<digest mark>`` is where a digest's "N more papers match"
leads: the matches of that digest's window that it did not carry, which reach the
reader nowhere else (the next digest starts after them; the feed holds only the
newest few).  Who may read a private feed may read it, as long as they subscribe.
"""

import logging
import re
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import Response

from digest import backtest, links
from digest.models import PaperMeta, PaperRow, Subscriber
from digest.paper_links import full_byline, links_of, plain_name
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
    verdicts: list[_Verdict] = []
    if PAPER_ID.fullmatch(ref):
        with web.store() as store:
            found = store.paper(ref)
            history = store.sightings(found.seq) if found else []
            reader = _feed_reader(store, request.query_params.get("reader", ""))
            if found is not None and reader is not None:
                verdicts = _verdicts(store, reader, found)
    if found is None:
        return web.pages.message(
            "No such paper", "We have no paper with this id.", status=404, links=[("/", "Home")]
        )
    return web.pages.page(
        "paper",
        title=found.title,
        paper=found,
        byline=full_byline(found.meta.authors),
        facts=_facts(found.meta),
        read=_links(found, web.config.digest.paper_url),
        sightings=history,
        verdicts=verdicts,
        cache="no-store" if verdicts else "public, max-age=300",
    )


class _Verdict(NamedTuple):
    """A verdict button of a reader's paper page: where it posts, its label, whether given."""

    action: str
    label: str
    given: bool


def _verdicts(store: Store, reader: Subscriber, paper: PaperRow) -> list[_Verdict]:
    now = store.verdict(reader.id, paper.seq)
    return [
        _Verdict(links.feedback_path(reader, paper.id, verdict), label, verdict == now)
        for verdict, label in links.VERDICT_LABELS.items()
    ]


class _Reading(NamedTuple):
    """Where to read a paper: ``url`` (its arXiv abstract, else the search) and the source's
    ``pages`` (PDF, Daily Papers, code not already among the abstract's own links)."""

    url: str
    label: str
    pages: list[tuple[str, str]]


def _links(paper: PaperRow, search: str) -> _Reading:
    found = links_of(paper, search)
    pages = [(found.pdf_url, "PDF"), (found.daily_papers_url, "Daily Papers")]
    pages += [(url, label) for url, label in found.code if url not in paper.links]
    label = "Abstract on arXiv" if found.pdf_url else "Find this paper"
    return _Reading(found.abstract_url, label, [(url, text) for url, text in pages if url])


def _facts(meta: PaperMeta) -> list[str]:
    """What a source told of the paper, one short phrase each; none for a text dump's paper."""
    found = [f"arXiv:{plain_name(meta.arxiv_id)}" if meta.arxiv_id else ""]
    found.append(", ".join(filter(None, map(plain_name, meta.categories))))
    found.append(f"published {plain_name(meta.published)}" if meta.published else "")
    for count, noun in ((meta.upvotes, "upvote"), (meta.comments, "comment")):
        if count is not None:
            found.append(f"{count} {noun}{'' if count == 1 else 's'}")
    return [fact for fact in found if fact]


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
        found = backtest.beyond(store, reader, digest, web.config.digest)
    return web.pages.page(
        "matches",
        title=f"{len(found)} more paper{'' if len(found) == 1 else 's'} from your digest",
        papers=found,
        digest=digest,
        filter=reader.filter,
        reader=request.path_params["token"],
    )


def _feed_reader(store: Store, token: str) -> Subscriber | None:
    """The subscriber whose feed token this is, unless they have unsubscribed."""
    found = links.resolve(token, "feed", store.subscriber_by_id)
    return None if found is None or found.status == "unsubscribed" else found
