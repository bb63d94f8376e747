"""Subscribe routes: the home page and its form, ``POST /subscribe``, ``/confirm/<token>``.

The form has two buttons: *Subscribe* (the default on Enter) and *Preview*, which
shows the backtest of the typed filter without storing anything.  A preview
searches the recent papers, so it is held to the core's filter limits
(``subscribers.check_filter``) before any search and rate-limited per client on
its own (``[web] preview_per_10_minutes``); ``run_preview`` is shared with the
manage page.

A subscription request is CSRF-checked and validated (a bad filter comes back
with the caret under the fault, status 400, nothing stored).  Only an accepted
request counts against the rate limits, per client address and per recipient
address at once (``security.admit``), so typos never lock anyone out and no one
can flood a mailbox from many clients.  It is then handed to ``double_opt_in``; the
answer is the same page whoever the address belongs to.

``GET /confirm/<token>`` changes nothing: it shows the address and the filter
the link confirms and one button, because mail scanners and link previews fetch
every link in a mail.  ``POST /confirm/<token>`` confirms.  It takes no CSRF
token: the signed token in the URL is the authorisation, and it only ever
confirms what it says (this address, this filter, asked for before any later
unsubscribe), so a cross-site POST could only do what the victim's own mail
offers, and only with a link that went to the victim's mailbox.  Expired links
are 410; forged ones, and links to an address unsubscribed since, 404; on both
methods.
"""

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from digest import lifecycle, links, subscribers
from digest.errors import QueryError, UndeliverableAddress, UsageError
from digest.models import Subscriber
from digest.store import Store
from digest.web import double_opt_in
from digest.web.forms import CsrfToken, Form, client_address, csrf_ok, read_form
from digest.web.preview import Preview, preview
from digest.web.security import ConfirmRequest, TokenExpired, admit
from digest.web.state import Web, web_of

FORBIDDEN = (
    "This form has expired or did not come from this site.",
    "Go back, reload the page and send it again.",
)


@dataclass(frozen=True, slots=True)
class FilterError:
    """A filter that does not parse, as the form shows it: the reason and the caret."""

    message: str
    caret: str

    @classmethod
    def of(cls, err: QueryError) -> "FilterError":
        return cls(f"Column {err.column + 1}: {err.reason}", err.caret())


@dataclass(frozen=True, slots=True)
class HomeForm:
    email: str = ""
    filter: str = ""
    email_error: str | None = None
    filter_error: FilterError | None = None
    preview: Preview | None = None


def home(request: Request) -> Response:
    return home_page(web_of(request), request, HomeForm())


def home_page(web: Web, request: Request, form: HomeForm, status: int = 200) -> Response:
    csrf = CsrfToken(web, request)
    page = web.pages.page(
        "home", status, title="Trending papers, filtered for you", form=form, csrf=csrf.field
    )
    page.headers["Cache-Control"] = "private, no-store"
    return csrf.apply(page)


async def subscribe(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    return await run_in_threadpool(_subscribe, web, request, form)


def _subscribe(web: Web, request: Request, form: Form) -> Response:
    if form.get("action") == "preview":
        return _preview(web, request, form)
    if not csrf_ok(web, request, form):
        return web.pages.message("Please try again", *FORBIDDEN, status=403)
    checked = _checked(form)
    if checked.email_error or checked.filter_error:
        return home_page(web, request, checked, 400)
    wait = admit(
        (web.limit, client_address(request)),
        (web.address_limit, checked.email.casefold()),
    )
    if wait:
        return too_many(web, "There have been too many requests to subscribe lately.", wait)
    return _request(web, subscribers.Wanted(checked.email, checked.filter))


def too_many(web: Web, what: str, wait: int) -> Response:
    """The 429 page: what was refused, when to try again, and the way back."""
    minutes = (wait + 59) // 60
    return web.pages.message(
        "Too many requests",
        what,
        f"Please try again in {minutes} minute{'' if minutes == 1 else 's'}.",
        status=429,
        headers={"Retry-After": str(wait)},
        links=[("/", "Back to the start page")],
    )


def _checked(form: Form) -> HomeForm:
    """The typed values, and the problem with each (if any)."""
    email, query = form.get("email", "").strip(), form.get("filter", "").strip()
    email_error = filter_error = None
    try:
        email = subscribers.normalize_email(email)
    except UndeliverableAddress:
        email_error = (
            "We cannot deliver to addresses with accents or other non-ASCII letters "
            "before the @. Please use another address."
        )
    except UsageError:
        email_error = "Please enter a valid email address, such as ada@example.org."
    try:
        subscribers.check_filter(query)
    except QueryError as err:
        filter_error = FilterError.of(err)
    return HomeForm(email, query, email_error, filter_error)


def _request(web: Web, wanted: subscribers.Wanted) -> Response:
    now = web.now()
    with web.store() as store:
        person, kind = lifecycle.request(store, wanted, now)
    link = double_opt_in.link_for(web.config, person, kind, web.confirm, wanted.filter)
    envelope = double_opt_in.message(web.renderer, person, kind, link, wanted.filter, now)
    if not double_opt_in.deliver(web.transport_factory, envelope):
        return web.pages.message(
            "We could not send the email",
            "Our mail server did not take the message just now. Please try again later.",
            status=503,
        )
    return web.pages.message(
        "Check your inbox",
        f"We have sent a message to {wanted.email}.",
        f"To start your digest, open the link in it within {web.config.web.confirm_hours} "
        "hours. If you are subscribed already, it tells you how to change your settings.",
        "Nothing arrived? Look in the spam folder, or send the form again.",
        links=[("/", "Back to the start page")],
    )


def _preview(web: Web, request: Request, form: Form) -> Response:
    if not csrf_ok(web, request, form):
        return web.pages.message("Please try again", *FORBIDDEN, status=403)
    email, query = form.get("email", "").strip(), form.get("filter", "").strip()
    try:
        with web.store() as store:
            shown = run_preview(web, request, store, query)
    except QueryError as err:
        shown_error = HomeForm(email, query, filter_error=FilterError.of(err))
        return home_page(web, request, shown_error, 400)
    if isinstance(shown, int):
        return too_many(web, "You have asked for previews too often from this address.", shown)
    return home_page(web, request, HomeForm(email, query, preview=shown))


def run_preview(web: Web, request: Request, store: Store, query: str) -> Preview | int:
    """The backtest of a typed filter, or the seconds to wait when over the preview limit.

    A filter beyond the core's limits is a QueryError before anything counts or searches.
    """
    subscribers.check_filter(query)
    wait = web.preview_limit.hit(client_address(request))
    if wait:
        return wait
    digest = web.config.digest
    return preview(store, query, web.now(), digest.paper_url, digest.lookback_days)


def confirm_page(request: Request) -> Response:
    """GET: what the link confirms and a button; changes nothing (mail scanners GET links)."""
    web = web_of(request)
    claim = _claim(web, request)
    if not isinstance(claim, ConfirmRequest):
        return claim
    with web.store() as store:
        person = lifecycle.confirmable(store, claim.subscriber_id, claim.email, claim.requested_at)
    if person is None:
        return _invalid_link(web)
    if person.status in ("active", "paused"):  # confirming again changes nothing
        return _confirmed(web, person)
    return web.pages.page(
        "confirm",
        title="Confirm your subscription",
        email=claim.email,
        filter=claim.filter,
        action=request.url.path,
    )


def confirm(request: Request) -> Response:
    """POST: confirm the signed request; the token is the authorisation (no CSRF token)."""
    web = web_of(request)
    claim = _claim(web, request)
    if not isinstance(claim, ConfirmRequest):
        return claim
    with web.store() as store:
        person = lifecycle.confirm(
            store, claim.subscriber_id, claim.email, claim.filter, claim.requested_at, web.now()
        )
    if person is None:
        return _invalid_link(web)
    return _confirmed(web, person)


def _claim(web: Web, request: Request) -> ConfirmRequest | Response:
    """The request a confirm token signs, or the page that says why there is none."""
    try:
        claim = web.confirm.read(request.path_params["token"])
    except TokenExpired:
        return web.pages.message(
            "This link has expired",
            f"Confirmation links work for {web.config.web.confirm_hours} hours.",
            "Subscribe again to get a new one.",
            status=410,
            links=[("/", "Subscribe again")],
        )
    return _invalid_link(web) if claim is None else claim


def _invalid_link(web: Web) -> Response:
    return web.pages.message(
        "This link is not valid",
        "It may have been cut short, or the address was unsubscribed since.",
        status=404,
        links=[("/", "Subscribe again")],
    )


def _confirmed(web: Web, person: Subscriber) -> Response:
    return web.pages.page(
        "confirmed",
        title="You are subscribed",
        person=person,
        manage=f"/manage/{links.token(person, 'manage')}",
        feed=f"/feeds/{links.token(person, 'feed')}",
    )
