"""Subscribe routes: the home page and its form, ``POST /subscribe``, ``GET /confirm/<token>``.

The form has two buttons: *Subscribe* (the default on Enter) and *Preview*, which
shows the backtest of the typed filter without storing anything and without
counting against the rate limit.  A subscription request is rate-limited per
client address, CSRF-checked, validated (a bad filter comes back with the caret
under the fault, status 400, nothing stored), then handed to ``signup``; the
answer is the same page whoever the address belongs to.
"""

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from digest import lifecycle, links, subscribers
from digest.errors import QueryError, UsageError
from digest.query import parse
from digest.web import signup
from digest.web.forms import CsrfToken, Form, client_address, csrf_ok, read_form
from digest.web.preview import Preview, preview
from digest.web.security import TokenExpired
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
    page = web.views.page(
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
    wait = web.limit.hit(client_address(request))
    if wait:
        minutes = (wait + 59) // 60
        return web.views.message(
            "Too many requests",
            "You have asked to subscribe too often from this address.",
            f"Please try again in {minutes} minute{'' if minutes == 1 else 's'}.",
            status=429,
            headers={"Retry-After": str(wait)},
        )
    if not csrf_ok(web, request, form):
        return web.views.message("Please try again", *FORBIDDEN, status=403)
    checked = _checked(form)
    if checked.email_error or checked.filter_error:
        return home_page(web, request, checked, 400)
    return _request(web, subscribers.Wanted(checked.email, checked.filter))


def _checked(form: Form) -> HomeForm:
    """The typed values, and the problem with each (if any)."""
    email, query = form.get("email", "").strip(), form.get("filter", "").strip()
    email_error = filter_error = None
    try:
        email = subscribers.normalize_email(email)
    except UsageError:
        email_error = "Please enter a valid email address, such as ada@example.org."
    try:
        parse(query)
    except QueryError as err:
        filter_error = FilterError.of(err)
    return HomeForm(email, query, email_error, filter_error)


def _request(web: Web, wanted: subscribers.Wanted) -> Response:
    now = web.now()
    with web.store() as store:
        person, kind = lifecycle.request(store, wanted, now)
    link = signup.link_for(web.config, person, kind, web.confirm, wanted.filter)
    envelope = signup.message(web.config, web.views, person, kind, link, now)
    if not signup.deliver(web.transport_factory, envelope):
        return web.views.message(
            "We could not send the email",
            "Our mail server did not take the message just now. Please try again later.",
            status=503,
        )
    return web.views.message(
        "Check your inbox",
        f"We have sent a message to {wanted.email}.",
        f"To start your digest, open the link in it within {web.config.web.confirm_hours} "
        "hours. If you are subscribed already, it tells you how to change your settings.",
        "Nothing arrived? Look in the spam folder, or send the form again.",
        links=[("/", "Back to the start page")],
    )


def _preview(web: Web, request: Request, form: Form) -> Response:
    if not csrf_ok(web, request, form):
        return web.views.message("Please try again", *FORBIDDEN, status=403)
    email, query = form.get("email", "").strip(), form.get("filter", "").strip()
    try:
        with web.store() as store:
            shown = preview(store, query, web.now(), web.config.digest.paper_url)
    except QueryError as err:
        shown_error = HomeForm(email, query, filter_error=FilterError.of(err))
        return home_page(web, request, shown_error, 400)
    return home_page(web, request, HomeForm(email, query, preview=shown))


def confirm(request: Request) -> Response:
    web = web_of(request)
    try:
        claim = web.confirm.read(request.path_params["token"])
    except TokenExpired:
        return web.views.message(
            "This link has expired",
            f"Confirmation links work for {web.config.web.confirm_hours} hours.",
            "Subscribe again to get a new one.",
            status=410,
            links=[("/", "Subscribe again")],
        )
    person = None
    if claim is not None:
        with web.store() as store:
            person = lifecycle.confirm(
                store, claim.subscriber_id, claim.email, claim.filter, claim.requested_at, web.now()
            )
    if person is None:
        return web.views.message(
            "This link is not valid",
            "It may have been cut short, or the address was unsubscribed since.",
            status=404,
            links=[("/", "Subscribe again")],
        )
    return web.views.page(
        "confirmed",
        title="You are subscribed",
        person=person,
        manage=f"/manage/{links.token(person, 'manage')}",
        feed=f"/feeds/{links.token(person, 'feed')}",
    )
