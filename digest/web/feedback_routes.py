"""Feedback routes: ``/feedback/<token>/<paper id>/<verdict>``, "more like this" and "not for me".

Every paper a reader gets (in a digest, on a signed paper page, in the private
feed) carries these two links, signed for that paper and verdict under the
reader's secret (``links.feedback_token``), so they work without a login and
one paper's link cannot be replayed for another.

GET changes nothing: link scanners and mail previews fetch every link, so it
shows one button (or, once recorded, what was recorded).  POST records; with
``action=undo`` it clears the verdict, but only while it is still this link's
(a later "not for me" is not undone by the "more like this" page).  Both are
idempotent: the answer is the same page however often the button is pressed.
As for the confirm and unsubscribe buttons, the signed URL is the authorisation
(no CSRF token): a cross-site POST could only do what the reader's own mail
offers.  A forged or revoked token, an unknown paper, and an unsubscribed
reader are all 404.  The pages show no other token of the reader: the private
feed carries these links, and a feed URL must not lead to the manage page.
"""

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from digest import links
from digest.models import VERDICTS, PaperRow, Subscriber, Verdict
from digest.store import Store, iso
from digest.web.forms import read_form
from digest.web.manage_routes import not_found
from digest.web.paper_routes import PAPER_ID
from digest.web.state import Web, web_of

ASKED: dict[Verdict, str] = {"more": "more papers like", "less": "fewer papers like"}


@dataclass(frozen=True, slots=True)
class Target:
    """Who a feedback link belongs to, about which paper, saying what."""

    person: Subscriber
    paper: PaperRow
    verdict: Verdict

    def current(self, store: Store) -> Verdict | None:
        """The reader's verdict on the paper now, whichever link gave it."""
        return store.verdict(self.person.id, self.paper.seq)


def feedback_page(request: Request) -> Response:
    """GET: what the link would record, and a button; or what is recorded, with undo."""
    web = web_of(request)
    with web.store() as store:
        target = _target(store, request)
        recorded = target is not None and target.current(store) == target.verdict
    if target is None:
        return not_found(web)
    return _page(web, request, target, recorded=recorded)


async def feedback_post(request: Request) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(_feedback_post, web_of(request), request, form)


def _feedback_post(web: Web, request: Request, form: dict[str, str]) -> Response:
    with web.store() as store:
        target = _target(store, request)
        if target is None:
            return not_found(web)
        person, seq = target.person.id, target.paper.seq
        if form.get("action") == "undo":
            if target.current(store) == target.verdict:
                store.clear_feedback(person, seq)
            return _page(web, request, target, recorded=False, undone=True)
        store.set_feedback(person, seq, target.verdict, iso(web.now()))
    return _page(web, request, target, recorded=True)


def _target(store: Store, request: Request) -> Target | None:
    """The link's reader, paper and verdict; None for a wrong link or a reader who left."""
    params = request.path_params
    paper_id, verdict = params["paper"], params["verdict"]
    if not PAPER_ID.fullmatch(paper_id) or verdict not in VERDICTS:
        return None
    person = links.resolve_feedback(params["token"], paper_id, verdict, store.subscriber_by_id)
    if person is None or person.status == "unsubscribed":
        return None
    paper = store.paper(paper_id)
    return None if paper is None else Target(person, paper, verdict)


def _page(
    web: Web, request: Request, target: Target, *, recorded: bool, undone: bool = False
) -> Response:
    verdict = target.verdict
    title = "Recorded" if recorded else "Removed" if undone else links.VERDICT_LABELS[verdict] + "?"
    return web.pages.page(
        "feedback",
        title=title,
        paper=target.paper,
        asked=ASKED[verdict],
        button=links.VERDICT_LABELS[verdict],
        recorded=recorded,
        undone=undone,
        action=request.url.path,
    )
