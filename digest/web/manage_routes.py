"""Manage and unsubscribe routes, addressed by the per-subscriber link tokens of ``links``.

``/manage/<token>``: the settings form (filter with caret errors, name,
frequency, format, whether to suggest papers the filter did not match), a
preview of the filter, pause/resume, and the papers the reader marked "more like
this" or "not for me" (the newest ``MAX_MARKED``), each with a button that takes
the mark back; every POST needs the CSRF token and a successful change
redirects (303) back to the page.  The
*Preview* button shares the start page's preview limit (``run_preview``).  No
action here brings an unsubscribed address back: only a new sign-up, confirmed
from the mailbox, does (``lifecycle``).

``/unsubscribe/<token>``: GET only shows a one-button page, because link
scanners and mail previews fetch every link; POST unsubscribes.  The POST needs
no cookie and no CSRF token: it is also the RFC 8058 one-click target of the
``List-Unsubscribe-Post`` header, which mail providers call with a body of
``List-Unsubscribe=One-Click`` and nothing else.  It is idempotent.
"""

from dataclasses import dataclass, replace

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest import lifecycle, links
from digest.errors import QueryError, UsageError
from digest.lifecycle import SETTINGS
from digest.models import FORMATS, FREQUENCIES, VERDICTS, PaperRow, Subscriber, Verdict
from digest.store import Store
from digest.web.forms import CsrfToken, Form, csrf_ok, read_form
from digest.web.paper_routes import PAPER_ID
from digest.web.preview import Preview
from digest.web.state import Web, web_of
from digest.web.subscribe_routes import FORBIDDEN, FilterError, run_preview, too_many

NOTICES = {
    "saved": "Your settings are saved.",
    "paused": "Your digest is paused. Resume it here whenever you like.",
    "resumed": "Your digest is on again.",
    "unchanged": "Nothing changed: an unsubscribed or bouncing address comes back by "
    "subscribing again from the start page.",
    "unmarked": "That paper is off your list.",
}
MAX_MARKED = 200
STATUS_ACTIONS: dict[str, lifecycle.Action] = {"pause": "pause", "resume": "resume"}


@dataclass(frozen=True, slots=True)
class ManageForm:
    """What the settings form shows: typed (or stored) values and the problems found."""

    values: dict[str, str]
    filter_error: FilterError | None = None
    error: str | None = None
    preview: Preview | None = None
    notice: str | None = None


def lookup(store: Store, token: str, purpose: links.Purpose) -> Subscriber | None:
    """The subscriber whose ``purpose`` token this is, or None (forged, revoked, unknown)."""
    return links.resolve(token, purpose, store.subscriber_by_id)


def manage(request: Request) -> Response:
    web = web_of(request)
    with web.store() as store:
        person = lookup(store, request.path_params["token"], "manage")
        if person is None:
            return not_found(web)
        form = _with_preview(web, request, store, person.filter, _stored(person))
        notice = NOTICES.get(request.query_params.get("done", ""))
        return _page(web, request, store, person, replace(form, notice=notice))


async def manage_post(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    return await run_in_threadpool(_manage_post, web, request, form)


def _manage_post(web: Web, request: Request, form: Form) -> Response:
    token = request.path_params["token"]
    with web.store() as store:
        person = lookup(store, token, "manage")
        if person is None:
            return not_found(web)
        if not csrf_ok(web, request, form):
            return web.pages.message("Please try again", *FORBIDDEN, status=403)
        action = form.get("action", "save")
        if action in STATUS_ACTIONS:
            return _change_status(web, store, person, token, STATUS_ACTIONS[action])
        if action == "unmark":
            return _unmark(store, person, token, form.get("paper", ""))
        settings = {key: form.get(key, getattr(person, key)).strip() for key in SETTINGS}
        wanted = form.get("suggestions") == "on"  # an unticked box sends nothing
        values = {**settings, "suggestions": "on" if wanted else ""}
        if action == "preview":
            return _preview(web, request, store, person, values)
        try:
            lifecycle.change_settings(
                store, person, settings, "subscriber", web.now(), suggestions=wanted
            )
        except QueryError as err:
            return _page(web, request, store, person, ManageForm(values, FilterError.of(err)), 400)
        except UsageError as err:
            return _page(web, request, store, person, ManageForm(values, error=err.message), 400)
    web.feeds.forget()  # the private feed follows the new filter at once
    return _done(token, "saved")


def _preview(
    web: Web, request: Request, store: Store, person: Subscriber, values: dict[str, str]
) -> Response:
    try:
        shown = run_preview(web, request, store, values["filter"])
    except QueryError as err:
        return _page(web, request, store, person, ManageForm(values, FilterError.of(err)), 400)
    if isinstance(shown, int):
        return too_many(web, "You have asked for previews too often from this address.", shown)
    return _page(web, request, store, person, ManageForm(values, preview=shown))


def _change_status(
    web: Web, store: Store, person: Subscriber, token: str, action: lifecycle.Action
) -> Response:
    """Pause or resume; a state the action does not apply to is shown as it is."""
    try:
        lifecycle.change_status(store, person, action, "subscriber", web.now())
    except lifecycle.Refused:
        return _done(token, "unchanged")
    return _done(token, "paused" if action == "pause" else "resumed")


def _unmark(store: Store, person: Subscriber, token: str, paper_id: str) -> Response:
    """Take back the reader's mark on a paper; one already gone is gone all the same."""
    paper = store.paper(paper_id) if PAPER_ID.fullmatch(paper_id) else None
    if paper is not None:
        store.clear_feedback(person.id, paper.seq)
    return _done(token, "unmarked")


def _marked(store: Store, person: Subscriber) -> dict[Verdict, list[PaperRow]]:
    """The newest ``MAX_MARKED`` papers the reader marked, by verdict, newest first."""
    newest = store.feedback(person.id)[::-1][:MAX_MARKED]
    rows = {paper.seq: paper for paper in store.papers(seqs=[f.paper_seq for f in newest])}
    found: dict[Verdict, list[PaperRow]] = {verdict: [] for verdict in VERDICTS}
    for given in newest:
        found[given.verdict].append(rows[given.paper_seq])
    return found


def _done(token: str, notice: str) -> Response:
    return RedirectResponse(f"/manage/{token}?done={notice}", status_code=303)


def _stored(person: Subscriber) -> ManageForm:
    values = {key: str(getattr(person, key)) for key in SETTINGS}
    return ManageForm({**values, "suggestions": "on" if person.suggestions else ""})


def _with_preview(
    web: Web, request: Request, store: Store, query: str, form: ManageForm
) -> ManageForm:
    """The page's own preview, under the same limit as the button (over it: none)."""
    try:
        shown = run_preview(web, request, store, query)
    except QueryError as err:
        return replace(form, filter_error=FilterError.of(err))
    return form if isinstance(shown, int) else replace(form, preview=shown)


def _page(
    web: Web,
    request: Request,
    store: Store,
    person: Subscriber,
    form: ManageForm,
    status: int = 200,
) -> Response:
    csrf = CsrfToken(web, request)
    page = web.pages.page(
        "manage",
        status,
        title="Your subscription",
        person=person,
        form=form,
        marked=_marked(store, person),
        labels=links.VERDICT_LABELS,
        csrf=csrf.field,
        frequencies=FREQUENCIES,
        formats=FORMATS,
        reader=links.token(person, "feed"),
        feed=f"/feeds/{links.token(person, 'feed')}",
        unsubscribe=f"/unsubscribe/{links.token(person, 'unsubscribe')}",
    )
    return csrf.apply(page)


def unsubscribe(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    with web.store() as store:
        person = lookup(store, token, "unsubscribe")
    if person is None:
        return not_found(web)
    if person.status == "unsubscribed":
        return _unsubscribed(web, person)
    path = request.url.path
    return web.pages.page("unsubscribe", title="Unsubscribe?", person=person, action=path)


def unsubscribe_post(request: Request) -> Response:
    """Unsubscribe, from the page's button or as an RFC 8058 one-click POST."""
    web = web_of(request)
    with web.store() as store:
        person = lookup(store, request.path_params["token"], "unsubscribe")
        if person is None:
            return not_found(web)
        lifecycle.unsubscribe(store, person, web.now())
    web.feeds.forget()  # the private feed stops at once, not a second later
    return _unsubscribed(web, person)


def _unsubscribed(web: Web, person: Subscriber) -> Response:
    return web.pages.message(
        "You are unsubscribed",
        f"{person.email} will get no more digests from us.",
        "Changed your mind? Subscribe again from the start page and confirm the email.",
        links=[("/", "Start page")],
    )


def not_found(web: Web) -> Response:
    return web.pages.message(
        "This link is not valid",
        "It may have been cut short when it was copied, or replaced by a newer one.",
        "Use the link in your most recent digest.",
        status=404,
    )
