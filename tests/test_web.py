"""The web front against the real app under uvicorn on a free loopback port, driven by httpx.

Every route, the conditional GETs (304) and gzip of the feeds, 404s, CSRF refusals,
the rate limits, expired confirm tokens, GET-does-not-confirm, GET-does-not-unsubscribe,
the RFC 8058 one-click POST, no address enumeration, what a third party's sign-up
cannot change, and the signing-key rules of ``digest serve``.
Confirmation mails are read from the Maildir the app delivers to (and once from a
real aiosmtpd server).  Time is the app's injected clock.
"""

import contextlib
import gzip
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from digest import backtest, lifecycle, links, sending
from digest.config import Config, from_mapping
from digest.errors import ConfigError, UsageError
from digest.ingest import ingest_files
from digest.mailer import Envelope, Outcome, Transport, transport_for
from digest.models import Entry, PaperMeta, Subscriber
from digest.store import Store
from digest.web import create_app, resolve_secret, start_in_thread
from digest.web.feed_cache import FRESH_SECONDS
from digest.web.server import is_loopback
from tests.smtp_servers import Sink, serve

from .conftest import NOW, ROOT, SEED_FILES, copy_database, make_config
from .test_dumps import ABSTRACT

SECRET = "test-signing-key-" + "x" * 24
TOPIC = {"name": "Diffusion & Video", "filter": "diffusion"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_CONFIRM = re.compile(r"http://\S+/confirm/\S+")
_MANAGE = re.compile(r"http://\S+(/manage/\S+)")
_MORE = re.compile(r"(\d+) more papers? match(?:es)? — see them all: (http://\S+)")
_LISTED = re.compile(r'<li><a class="link" href="/papers/([0-9a-f]{16})(?:\?reader=[0-9a-f-]+)?">')
# One TLS context for every client: making one loads the CA bundle, a tenth of a test
# here, and these clients speak plain http to loopback anyway.
TLS = ssl.create_default_context()


# -- the server and its helpers ----------------------------------------------------------


def start(app: Starlette, sock: socket.socket) -> tuple[uvicorn.Server, threading.Thread]:
    """Start uvicorn on a socket bound in advance; return once it listens or has given up."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's answer to a failed startup
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive():
        assert time.monotonic() < deadline, "the server did not start within 10 s"
        time.sleep(0.01)
    return server, thread


Waits = list[Callable[[], None]]


@contextmanager
def running(app: Starlette, sock: socket.socket, later: Waits | None = None) -> Iterator[str]:
    """Serve ``app`` for the length of the block; yield its base URL.

    The server is told to stop when the block ends and waited for there, or, given
    ``later``, the wait is put there (see the ``later`` fixture).
    """
    server, thread = start(app, sock)

    def stopped() -> None:
        thread.join(timeout=10)
        assert not thread.is_alive(), "the server did not stop within 10 s"
        sock.close()

    try:
        assert server.started, "the server stopped while starting"
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        if later is None:
            stopped()
        else:
            later.append(stopped)


@pytest.fixture(scope="session")
def later() -> Iterator[Waits]:
    """Waits for servers already told to stop, run at the end of the session: uvicorn
    takes ~0.2 s to notice and wind down, which each test would otherwise spend idle."""
    waits: Waits = []
    yield waits
    for wait in waits:
        wait()


def loopback_socket() -> socket.socket:
    """A bound socket for uvicorn; see ``smtp_servers.bind`` for why proto is named."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Site:
    """A running web front with its config, clock, database and Maildir."""

    url: str
    config: Config
    clock: Clock
    client: httpx.Client
    seen_mail: set[str] = field(default_factory=set)

    @property
    def maildir(self) -> Path:
        return self.config.delivery.maildir

    def csrf(self, path: str = "/") -> str:
        """GET a page with a form (which sets the cookie) and return its CSRF field."""
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        found = _CSRF.search(response.text)
        assert found, "no CSRF field on the page"
        return found.group(1)

    def subscribe(
        self,
        email: str,
        query: str = "diffusion",
        *,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> httpx.Response:
        """Send the start page's form (``extra`` fields, e.g. action="preview")."""
        form = {"csrf": self.csrf(), "email": email, "filter": query, **extra}
        return self.client.post("/subscribe", data=form, headers=headers)

    def new_mail(self) -> list[EmailMessage]:
        """The messages delivered since the last call, oldest first."""
        folder = self.maildir / "new"
        paths = (
            sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
        )
        fresh = [p for p in paths if p.name not in self.seen_mail]
        self.seen_mail.update(p.name for p in fresh)
        return [parse_mail(p.read_bytes()) for p in fresh]

    def confirm_link(self) -> str:
        [mail] = self.new_mail()
        found = _CONFIRM.search(text_of(mail))
        assert found, text_of(mail)
        return found.group(0)

    def confirm(self, link: str) -> httpx.Response:
        """Press the button behind a confirm link (a POST to the link itself)."""
        return self.client.post(link)

    def subscriber(self, email: str) -> Subscriber | None:
        with closing(Store(self.config.storage.database)) as store:
            return store.subscriber(email)

    def send_digests(self) -> list[EmailMessage]:
        """``digest send`` on the site's database at its clock; the digests it mailed."""
        transport = transport_for(self.config.delivery, self.config.smtp)
        with closing(Store(self.config.storage.database)) as store:
            sending.send(store, self.config, transport, self.clock)
        return self.new_mail()

    def active(self, email: str, query: str = "diffusion") -> Subscriber:
        """A subscriber made through the web: subscribe, then open the confirm link."""
        assert self.subscribe(email, query).status_code == 200
        assert self.confirm(self.confirm_link()).status_code == 200
        found = self.subscriber(email)
        assert found is not None
        assert found.status == "active"
        return found


def parse_mail(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_path(person: Subscriber, purpose: links.Purpose) -> str:
    return f"/{'feeds' if purpose == 'feed' else purpose}/{links.token(person, purpose)}"


def site_config(tmp_path: Path, url: str, **sections: dict[str, Any]) -> Config:
    """A config with its data in ``tmp_path``; ``sections`` are merged over the defaults."""
    data: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "digest.db")},
        "delivery": {"maildir": str(tmp_path / "mail")},
        "web": {"base_url": url, "subscribe_per_hour": 1000},
        "topics": [TOPIC],
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return make_config(**data)


MakeSite = Callable[..., Site]


@pytest.fixture
def make_site(tmp_path: Path, seeded_database: Path, later: Waits) -> Iterator[MakeSite]:
    """Start a server on a copy of the seeded database; all are stopped after the test.

    Keywords are config sections (``web={"subscribe_per_hour": 2}``) and
    ``transport_factory``.
    """
    copy_database(seeded_database, tmp_path)
    with ExitStack() as stack:

        def make(
            *, transport_factory: Callable[[], Transport] | None = None, **sections: Any
        ) -> Site:
            sock = loopback_socket()
            config = site_config(tmp_path, f"http://127.0.0.1:{sock.getsockname()[1]}", **sections)
            clock = Clock(NOW + timedelta(hours=2))
            app = create_app(
                config, secret=SECRET, clock=clock, transport_factory=transport_factory
            )
            url = stack.enter_context(running(app, sock, later))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=10, verify=TLS))
            return Site(url, config, clock, client)

        yield make


@pytest.fixture
def site(make_site: MakeSite) -> Site:
    return make_site()


# -- the start page and the preview ------------------------------------------------------


def test_the_start_page_explains_links_the_feeds_and_sets_a_csrf_cookie(site: Site) -> None:
    response = site.client.get("/")
    assert response.status_code == 200
    html = response.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<form method="post" action="/subscribe"' in html
    for href in ("/feeds/all.atom", "/feeds/all.rss", "/feeds/topics/diffusion-video.atom"):
        assert f'href="{href}"' in html
    assert "Diffusion &amp; Video" in html
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("csrftoken=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "script-src" not in response.headers["content-security-policy"]  # default-src 'none'
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in html


def test_preview_shows_the_backtest_and_stores_nothing(make_site: MakeSite) -> None:
    site = make_site(web={"subscribe_per_hour": 1})
    for _ in range(3):  # previews do not count against the subscribe limit
        response = site.subscribe("ada@example.org", "diffusion -video", action="preview")
        assert response.status_code == 200
    html = response.text
    assert "Preview: the last 7 days" in html
    assert re.search(r"<td>Tue Nov 24</td><td class=\"count\">[1-9]\d*</td>", html)
    assert html.count('<td>Mon Nov 23</td><td class="count">0</td>') == 1
    assert len(re.findall(r'<li><a class="link" href="/papers/[0-9a-f]{16}">', html)) == 10
    assert 'value="ada@example.org"' in html
    assert 'value="diffusion -video"' in html
    assert site.subscriber("ada@example.org") is None
    assert site.new_mail() == []
    assert site.subscribe("ada@example.org").status_code == 200


def test_a_bad_filter_comes_back_with_the_caret_and_nothing_is_stored(site: Site) -> None:
    for action in ("preview", "subscribe"):
        response = site.subscribe("ada@example.org", 'diffusion "video', action=action)
        assert response.status_code == 400
        assert "Column 11: unclosed quote" in response.text
        assert '<pre class="caret">  diffusion &#34;video\n            ^</pre>' in response.text
    assert site.subscriber("ada@example.org") is None
    assert site.new_mail() == []


def test_a_bad_address_is_refused_and_everything_typed_is_escaped(site: Site) -> None:
    response = site.subscribe('"><script>alert(1)</script>', "diffusion")
    assert response.status_code == 400
    assert "Please enter a valid email address" in response.text
    assert "<script>" not in response.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in response.text
    assert site.new_mail() == []


def test_an_address_that_cannot_be_delivered_is_refused_at_the_door(site: Site) -> None:
    response = site.subscribe("josé@example.org", "diffusion")
    assert response.status_code == 400
    assert "non-ASCII letters before the @" in response.text
    assert site.subscriber("josé@example.org") is None
    assert site.new_mail() == []


# -- subscribe, confirm ------------------------------------------------------------------


def test_subscribing_stores_a_pending_subscriber_and_mails_a_confirm_link(site: Site) -> None:
    response = site.subscribe("Ada@Example.ORG", "diffusion -video")
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert (person.status, person.source, person.filter) == ("pending", "web", "diffusion -video")
    [mail] = site.new_mail()
    assert mail["Subject"] == "Confirm your subscription to Paper Digest"
    assert mail["From"] == site.config.delivery.from_
    assert mail["To"] == "Ada@example.org"
    assert mail["Message-ID"].endswith("@example.org>")
    assert _CONFIRM.search(text_of(mail))
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert f"{site.url}/confirm/" in html.get_content()


def test_the_confirm_link_shows_one_button_and_changes_nothing(site: Site) -> None:
    site.subscribe("ada@example.org", 'diffusion -"<b>video</b>"')
    link = site.confirm_link()
    path = "/confirm/" + link.rsplit("/", 1)[1]
    for _ in range(3):  # link scanners, previews, a curious click
        response = site.client.get(link)
        assert response.status_code == 200
    html = response.text
    assert '<h1 class="heading">Confirm your subscription</h1>' in html
    assert f'<form method="post" action="{path}">' in html
    assert html.count("<button") == 1
    assert "<strong>ada@example.org</strong>" in html
    assert '<span class="filter">diffusion -&#34;&lt;b&gt;video&lt;/b&gt;&#34;</span>' in html
    assert "<b>" not in html
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert person.status == "pending"


def test_the_button_behind_the_confirm_link_activates_and_shows_the_manage_link(
    site: Site,
) -> None:
    site.subscribe("ada@example.org")
    link = site.confirm_link()
    for _ in range(2):  # a second click shows the same page
        response = site.confirm(link)
        assert response.status_code == 200
        assert "You are subscribed" in response.text
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert person.status == "active"
    assert f'href="{link_path(person, "manage")}"' in response.text
    assert response.headers["cache-control"] == "no-store"


def test_an_expired_confirm_link_is_refused(site: Site) -> None:
    site.subscribe("ada@example.org")
    link = site.confirm_link()
    site.clock.advance(hours=48, seconds=1)
    for method in ("GET", "POST"):
        response = site.client.request(method, link)
        assert response.status_code == 410
        assert "This link has expired" in response.text
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert person.status == "pending"


def test_a_confirm_link_within_its_hours_still_works(site: Site) -> None:
    site.subscribe("ada@example.org")
    link = site.confirm_link()
    site.clock.advance(hours=47, minutes=59)
    assert site.confirm(link).status_code == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda link: link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"),
        lambda link: link.rsplit("/", 1)[0] + "/not-a-token",
        lambda link: link.rsplit("/", 1)[0] + "/",
    ],
    ids=["forged", "garbage", "empty"],
)
def test_a_forged_confirm_link_is_404(site: Site, mangle: Callable[[str], str]) -> None:
    site.subscribe("ada@example.org")
    link = mangle(site.confirm_link())
    for method in ("GET", "POST"):
        response = site.client.request(method, link)
        assert response.status_code == 404
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert person.status == "pending"


def test_an_old_confirm_link_does_not_bring_back_an_unsubscribed_address(site: Site) -> None:
    site.subscribe("ada@example.org")
    link = site.confirm_link()
    person = site.subscriber("ada@example.org")
    assert person is not None
    site.clock.advance(minutes=5)  # unsubscribed after asking
    with closing(Store(site.config.storage.database)) as store:
        lifecycle.remove(store, person.email, site.clock())
    for method in ("GET", "POST"):
        response = site.client.request(method, link)
        assert response.status_code == 404
        assert "the address was unsubscribed since" in response.text
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert person.status == "unsubscribed"


def test_the_answer_is_the_same_whoever_the_address_belongs_to(site: Site) -> None:
    """New, pending, active and unsubscribed: same page, one email each (no enumeration)."""
    bodies, subjects = [], []

    def ask() -> None:
        response = site.subscribe("ada@example.org")
        assert response.status_code == 200
        bodies.append(_CSRF.sub("", response.text))
        [mail] = site.new_mail()
        subjects.append(mail["Subject"])
        if "Confirm" in mail["Subject"]:
            site.confirm(_CONFIRM.search(text_of(mail)).group(0))  # type: ignore[union-attr]

    ask()  # new: confirm link (then confirmed)
    ask()  # active: "already subscribed" with the manage link
    person = site.subscriber("ada@example.org")
    assert person is not None
    site.client.post(link_path(person, "unsubscribe"))
    ask()  # unsubscribed: a new confirm link
    assert len(set(bodies)) == 1, "the answer tells known addresses apart"
    assert subjects == [
        "Confirm your subscription to Paper Digest",
        "You are already subscribed to Paper Digest",
        "Confirm your subscription to Paper Digest",
    ]


def test_a_pending_address_gets_a_fresh_confirm_link(site: Site) -> None:
    first = site.subscribe("ada@example.org", "diffusion")
    site.confirm_link()
    second = site.subscribe("ada@example.org", "video")
    assert _CSRF.sub("", first.text) == _CSRF.sub("", second.text)
    assert site.confirm(site.confirm_link()).status_code == 200
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert (person.status, person.filter) == ("active", "video")


def test_the_already_subscribed_mail_carries_the_manage_link(site: Site) -> None:
    person = site.active("ada@example.org")
    site.subscribe("ada@example.org", "something else entirely")
    [mail] = site.new_mail()
    found = _MANAGE.search(text_of(mail))
    assert found
    assert found.group(1) == link_path(person, "manage")
    assert site.subscriber("ada@example.org") == person  # nothing changed


def test_a_third_partys_request_does_not_change_what_a_pending_link_confirms(
    site: Site,
) -> None:
    site.subscribe("ada@example.org", "diffusion")
    victims = site.confirm_link()
    assert site.subscribe("ada@example.org", "crypto giveaway").status_code == 200
    [mail] = site.new_mail()  # the victim's mailbox gets it; it says what it would confirm
    assert "crypto giveaway" in text_of(mail)
    pending = site.subscriber("ada@example.org")
    assert pending is not None
    assert (pending.status, pending.filter) == ("pending", "diffusion")
    assert "diffusion" in site.client.get(victims).text
    assert site.confirm(victims).status_code == 200
    person = site.subscriber("ada@example.org")
    assert person is not None
    assert (person.status, person.filter) == ("active", "diffusion")


def test_a_third_partys_request_never_revives_an_unsubscribed_address_or_its_feed(
    site: Site,
) -> None:
    site.subscribe("ada@example.org", "diffusion")
    old = site.confirm_link()
    site.confirm(old)
    person = site.subscriber("ada@example.org")
    assert person is not None
    feed = link_path(person, "feed") + ".atom"
    assert site.client.get(feed).status_code == 200
    site.client.post(link_path(person, "unsubscribe"))
    assert site.client.get(feed).status_code == 404
    site.clock.advance(minutes=1)
    assert site.subscribe("ada@example.org", "crypto giveaway").status_code == 200
    new = site.confirm_link()  # went to the victim's mailbox, not to the third party
    assert site.client.get(new).status_code == 200  # a scanner opening it changes nothing
    for method in ("GET", "POST"):
        assert site.client.request(method, old).status_code == 404
    assert site.client.get(feed).status_code == 404
    after = site.subscriber("ada@example.org")
    assert after is not None
    assert (after.status, after.filter) == ("unsubscribed", "diffusion")


@pytest.mark.parametrize("status", ["active", "paused"])
def test_a_third_partys_request_never_touches_a_live_subscription(site: Site, status: str) -> None:
    site.subscribe("ada@example.org", "diffusion")
    link = site.confirm_link()
    site.confirm(link)
    person = site.subscriber("ada@example.org")
    assert person is not None
    path = link_path(person, "manage")
    form = {"csrf": site.csrf(path), "action": "save", "filter": "agents"}
    assert site.client.post(path, data=form).status_code == 303
    if status == "paused":
        site.client.post(path, data={"csrf": site.csrf(path), "action": "pause"})
    before = site.subscriber("ada@example.org")
    assert before is not None
    assert (before.status, before.filter) == (status, "agents")
    assert site.subscribe("ada@example.org", "crypto giveaway").status_code == 200
    [mail] = site.new_mail()
    assert mail["Subject"] == "You are already subscribed to Paper Digest"
    assert not _CONFIRM.search(text_of(mail))
    assert site.subscriber("ada@example.org") == before
    for method in ("GET", "POST"):  # the old confirm link, opened again
        assert site.client.request(method, link).status_code == 200
    assert site.subscriber("ada@example.org") == before


def test_the_confirmation_mails_are_well_formed(site: Site) -> None:
    site.subscribe("ada@example.org", "diffusion -video")
    [confirm] = site.new_mail()
    site.confirm(_CONFIRM.search(text_of(confirm)).group(0))  # type: ignore[union-attr]
    site.subscribe("ada@example.org")
    [known] = site.new_mail()
    for mail in (confirm, known):
        assert [part.defects for part in mail.walk()] == [[], [], []]
        assert mail.get_content_type() == "multipart/alternative"
        types = [part.get_content_type() for part in mail.iter_parts()]
        assert types == ["text/plain", "text/html"]
        assert parsedate_to_datetime(mail["Date"]) == site.clock.now
        assert re.fullmatch(r"<confirm\.[0-9a-f]{16}@example\.org>", mail["Message-ID"])
        assert mail["Auto-Submitted"] == "auto-generated"
        assert mail["From"] == site.config.delivery.from_
    assert "your filter: diffusion -video" in text_of(confirm)
    assert confirm["Message-ID"] != known["Message-ID"]


def test_the_confirmation_goes_through_a_real_smtp_server(make_site: MakeSite) -> None:
    with serve(Sink()) as smtp:
        site = make_site(delivery={"backend": "smtp"}, smtp={"port": smtp.port})
        assert site.subscribe("ada@example.org").status_code == 200
        [received] = smtp.handler.wait_for(1)
    assert received.rcpt_tos == ("ada@example.org",)
    assert b"Subject: Confirm your subscription to Paper Digest" in received.data
    assert site.new_mail() == []


class _Refusing:
    """A transport whose relay defers every message."""

    concurrency = 1

    async def __aenter__(self) -> "_Refusing":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, envelope: Envelope) -> Outcome:
        return Outcome("deferred", 451, "451 try later")


def test_a_mail_server_refusal_says_so_with_503(make_site: MakeSite) -> None:
    site = make_site(transport_factory=_Refusing)
    response = site.subscribe("ada@example.org")
    assert response.status_code == 503
    assert "We could not send the email" in response.text


# -- CSRF and the rate limit -------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "keep_cookie"),
    [
        (None, True),
        ("forged", True),
        ("valid", False),
        ("other", True),
    ],
    ids=["missing", "forged", "no-cookie", "another-cookie's"],
)
def test_a_post_without_a_matching_csrf_token_is_refused(
    site: Site, token: str | None, keep_cookie: bool
) -> None:
    person = site.active("grace@example.org", "agents")
    site.new_mail()
    field_value = site.csrf()
    if token == "forged":
        field_value = field_value[:-4] + "AAAA"
    elif token == "other":
        with httpx.Client(base_url=site.url, verify=TLS) as other:
            field_value = _CSRF.search(other.get("/").text).group(1)  # type: ignore[union-attr]
    if not keep_cookie:
        site.client.cookies.clear()
    form = {} if token is None else {"csrf": field_value}
    subscribe = site.client.post(
        "/subscribe", data={**form, "email": "ada@example.org", "filter": "diffusion"}
    )
    manage = site.client.post(
        link_path(person, "manage"), data={**form, "filter": "changed", "action": "save"}
    )
    assert (subscribe.status_code, manage.status_code) == (403, 403)
    assert "This form has expired or did not come from this site" in subscribe.text
    assert site.subscriber("ada@example.org") is None
    assert site.subscriber("grace@example.org") == person
    assert site.new_mail() == []


def test_subscribing_is_rate_limited_per_client_address(make_site: MakeSite) -> None:
    site = make_site(web={"subscribe_per_hour": 3})
    for i in range(3):
        assert site.subscribe(f"user{i}@example.org").status_code == 200
    refused = site.subscribe("user3@example.org")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert "Too many requests" in refused.text
    assert '<a class="link" href="/">Back to the start page</a>' in refused.text
    assert site.subscriber("user3@example.org") is None
    assert site.subscribe("user3@example.org", **FROM(9)).status_code == 200  # another client
    site.clock.advance(hours=1)
    assert site.subscribe("user4@example.org").status_code == 200


def FROM(client: int) -> dict[str, Any]:
    """Send as another client: uvicorn trusts X-Forwarded-For from loopback (a local proxy)."""
    return {"headers": {"X-Forwarded-For": f"203.0.113.{client}"}}


def test_one_address_gets_at_most_its_limit_of_mails_from_any_number_of_clients(
    make_site: MakeSite,
) -> None:
    site = make_site(web={"subscribe_per_hour": 5, "subscribe_per_address_per_hour": 3})
    statuses = [site.subscribe("victim@example.org", **FROM(i)).status_code for i in range(7)]
    assert statuses == [200, 200, 200, 429, 429, 429, 429]
    assert len(site.new_mail()) == 3
    refused = site.subscribe("victim@example.org", **FROM(8))
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert '<a class="link" href="/">Back to the start page</a>' in refused.text
    assert site.subscribe("grace@example.org", **FROM(0)).status_code == 200  # others still can
    site.clock.advance(hours=1)
    assert site.subscribe("Victim@Example.org", **FROM(0)).status_code == 200
    assert len(site.new_mail()) == 2


def test_only_accepted_requests_count_against_the_limits(make_site: MakeSite) -> None:
    site = make_site(web={"subscribe_per_hour": 5, "subscribe_per_address_per_hour": 1})
    typos = [
        site.subscribe("ada@", "diffusion"),
        site.subscribe("ada example.org", "diffusion"),
        site.subscribe("ada@example.org", 'diffusion "video'),
        site.subscribe("ada@example.org", "diffusion AND"),
        site.client.post("/subscribe", data={"email": "ada@example.org", "filter": "x"}),
    ]
    assert [r.status_code for r in typos] == [400, 400, 400, 400, 403]
    assert site.subscribe("ada@example.org").status_code == 200
    assert len(site.new_mail()) == 1
    assert site.subscribe("ada@example.org").status_code == 429  # the address's one mail
    for i in range(4):  # ...did not use up this client's places
        assert site.subscribe(f"user{i}@example.org").status_code == 200
    assert site.subscribe("user4@example.org").status_code == 429


def test_previews_are_rate_limited_per_client_with_a_way_back(make_site: MakeSite) -> None:
    site = make_site(web={"preview_per_10_minutes": 3})
    person = site.active("ada@example.org")
    path = link_path(person, "manage")
    assert site.subscribe("grace@example.org", "agents", action="preview").status_code == 200
    form = {"csrf": site.csrf(path), "action": "preview", "filter": "video"}  # its preview counts
    assert site.client.post(path, data=form).status_code == 200
    assert 'id="preview"' not in site.client.get(path).text, "over the limit: no preview"
    for refused in (
        site.subscribe("grace@example.org", "agents", action="preview"),
        site.client.post(path, data=form),
    ):
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 600
        assert "previews too often" in refused.text
        assert '<a class="link" href="/">Back to the start page</a>' in refused.text
    other = site.subscribe("grace@example.org", "agents", action="preview", **FROM(1))
    assert other.status_code == 200
    assert site.subscribe("grace@example.org", "agents").status_code == 200  # not a preview
    site.clock.advance(minutes=10)
    assert site.client.post(path, data=form).status_code == 200


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (" OR ".join(f"word{i}" for i in range(1300)), "Column 501: a filter can be at most 500"),
        (" OR ".join(f"w{i}" for i in range(25)), "Column 1: a filter can have at most 24 terms"),
    ],
    ids=["13-kB", "25-terms"],
)
def test_a_filter_beyond_the_core_limits_is_refused_before_any_search(
    site: Site, monkeypatch: pytest.MonkeyPatch, query: str, error: str
) -> None:
    person = site.active("grace@example.org", "agents")
    site.new_mail()

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backtest ran")

    path = link_path(person, "manage")
    csrf = site.csrf(path)  # the manage page itself shows a backtest of the stored filter
    monkeypatch.setattr(backtest, "backtest", no_search)
    answers = [site.subscribe("ada@example.org", query, action=a) for a in ("preview", "subscribe")]
    for action in ("preview", "save"):
        answers.append(
            site.client.post(path, data={"csrf": csrf, "action": action, "filter": query})
        )
    for response in answers:
        assert response.status_code == 400
        assert error in response.text
        assert '<pre class="caret">' in response.text
    assert site.subscriber("ada@example.org") is None
    assert site.subscriber("grace@example.org") == person
    assert site.new_mail() == []


def test_the_preview_covers_the_configured_lookback_days(make_site: MakeSite) -> None:
    site = make_site(digest={"lookback_days": 3})
    html = site.subscribe("ada@example.org", "diffusion", action="preview").text
    assert "Preview: the last 3 days" in html
    assert re.findall(r"<tr><td>([^<]+)</td>", html) == ["Sun Nov 22", "Mon Nov 23", "Tue Nov 24"]


# -- manage ------------------------------------------------------------------------------


def test_the_manage_page_shows_the_settings_and_a_preview(site: Site) -> None:
    person = site.active("ada@example.org", "diffusion -video")
    response = site.client.get(link_path(person, "manage"))
    assert response.status_code == 200
    html = response.text
    assert 'value="diffusion -video"' in html
    assert '<option value="daily" selected>' in html
    assert "Preview: the last 7 days" in html
    assert "Pause digests" in html
    assert f'href="{link_path(person, "unsubscribe")}"' in html
    assert f'href="{link_path(person, "feed")}.atom"' in html


def test_saving_the_settings_redirects_back_with_a_notice(site: Site) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "manage")
    form = {
        "csrf": site.csrf(path),
        "action": "save",
        "filter": "agents OR robot*",
        "name": "Ada",
        "frequency": "weekly",
        "format": "text",
    }
    response = site.client.post(path, data=form)
    assert response.status_code == 303
    assert response.headers["location"] == f"{path}?done=saved"
    changed = site.subscriber("ada@example.org")
    assert changed is not None
    assert (changed.filter, changed.name, changed.frequency, changed.format) == (
        "agents OR robot*",
        "Ada",
        "weekly",
        "text",
    )
    assert "Your settings are saved." in site.client.get(response.headers["location"]).text


def test_a_bad_filter_on_the_manage_page_shows_the_caret_and_keeps_the_old_one(
    site: Site,
) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "manage")
    form = {"csrf": site.csrf(path), "action": "save", "filter": "agents AND"}
    response = site.client.post(path, data=form)
    assert response.status_code == 400
    assert "AND needs a term on each side" in response.text
    assert '<pre class="caret">' in response.text
    assert 'value="agents AND"' in response.text
    assert site.subscriber("ada@example.org") == person


def test_preview_on_the_manage_page_does_not_save(site: Site) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "manage")
    form = {"csrf": site.csrf(path), "action": "preview", "filter": "video"}
    response = site.client.post(path, data=form)
    assert response.status_code == 200
    assert '<span class="filter">video</span> matched' in response.text
    assert site.subscriber("ada@example.org") == person


def test_pause_and_resume(site: Site) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "manage")
    for action, status in (("pause", "paused"), ("resume", "active")):
        response = site.client.post(path, data={"csrf": site.csrf(path), "action": action})
        assert response.status_code == 303
        changed = site.subscriber("ada@example.org")
        assert changed is not None
        assert changed.status == status
    assert "Your digest is on again." in site.client.get(f"{path}?done=resumed").text


def test_a_name_with_a_line_break_is_refused(site: Site) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "manage")
    form = {"csrf": site.csrf(path), "action": "save", "name": "Ada\r\nBcc: x@y"}
    response = site.client.post(path, data=form)
    assert response.status_code == 400
    assert "a name cannot contain line breaks" in response.text


@pytest.mark.parametrize("route", ["manage", "unsubscribe"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_wrong_link_token_is_404(site: Site, route: links.Purpose, method: str) -> None:
    person = site.active("ada@example.org")
    other: links.Purpose = "unsubscribe" if route == "manage" else "manage"
    wrong = [
        f"/{route}/{links.token(person, other)}",  # a real token for another purpose
        f"/{route}/{person.id}-{'0' * 32}",
        f"/{route}/999-{links.token(person, route).split('-')[1]}",
        f"/{route}/not-a-token",
    ]
    for path in wrong:
        data = {"csrf": site.csrf()} if method == "POST" else None
        response = site.client.request(method, path, data=data)
        assert response.status_code == 404, path
    assert site.subscriber("ada@example.org") == person


# -- unsubscribe -------------------------------------------------------------------------


def test_get_on_the_unsubscribe_link_does_not_unsubscribe(site: Site) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "unsubscribe")
    for _ in range(3):  # link scanners, previews, a curious click
        response = site.client.get(path)
        assert response.status_code == 200
    assert f'<form method="post" action="{path}">' in response.text
    assert response.text.count("<button") == 1
    assert site.subscriber("ada@example.org") == person


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_without_cookie_or_csrf_token(
    site: Site, encoding: str
) -> None:
    person = site.active("ada@example.org")
    path = link_path(person, "unsubscribe")
    # a mail provider: no cookie at all
    with httpx.Client(base_url=site.url, verify=TLS) as provider:
        for _ in range(2):  # idempotent
            if encoding == "multipart":
                response = provider.post(
                    path, data={"List-Unsubscribe": "One-Click"}, files={"x": ("", b"")}
                )
            else:
                response = provider.post(path, data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 200, response.text
            assert "You are unsubscribed" in response.text
    changed = site.subscriber("ada@example.org")
    assert changed is not None
    assert changed.status == "unsubscribed"


def test_list_unsubscribe_is_one_url_whose_one_click_post_unsubscribes(site: Site) -> None:
    person = site.active("ada@example.org")
    [mail] = site.send_digests()
    header = str(mail["List-Unsubscribe"])
    assert "mailto:" not in header
    [url] = re.findall(r"<([^>]*)>", header)
    assert url == site.url + link_path(person, "unsubscribe")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with httpx.Client(verify=TLS) as provider:  # what a mail provider sends, no cookie
        response = provider.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    changed = site.subscriber("ada@example.org")
    assert changed is not None
    assert changed.status == "unsubscribed"


def test_the_unsubscribe_page_button_unsubscribes(site: Site) -> None:
    person = site.active("ada@example.org")
    page = site.client.get(link_path(person, "unsubscribe")).text
    action = re.search(r'<form method="post" action="([^"]+)">', page).group(1)  # type: ignore[union-attr]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
    assert site.client.post(action, data=fields).status_code == 200
    changed = site.subscriber("ada@example.org")
    assert changed is not None
    assert changed.status == "unsubscribed"
    assert "You are unsubscribed" in site.client.get(action).text


def test_only_a_new_confirmed_sign_up_brings_an_unsubscribed_address_back(site: Site) -> None:
    person = site.active("ada@example.org")
    site.client.post(link_path(person, "unsubscribe"))
    path = link_path(person, "manage")
    response = site.client.post(path, data={"csrf": site.csrf(path), "action": "resume"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{path}?done=unchanged"
    notice = site.client.get(response.headers["location"]).text
    assert "subscribing again from the start page" in notice
    changed = site.subscriber("ada@example.org")
    assert changed is not None
    assert changed.status == "unsubscribed"
    site.clock.advance(minutes=1)
    assert site.subscribe("ada@example.org", "agents").status_code == 200
    assert site.confirm(site.confirm_link()).status_code == 200
    back = site.subscriber("ada@example.org")
    assert back is not None
    assert (back.status, back.filter) == ("active", "agents")


# -- feeds -------------------------------------------------------------------------------


def feed_paths(person: Subscriber) -> list[tuple[str, str]]:
    token = links.token(person, "feed")
    return [
        ("/feeds/all.atom", "public"),
        ("/feeds/all.rss", "public"),
        ("/feeds/topics/diffusion-video.atom", "public"),
        ("/feeds/topics/diffusion-video.rss", "public"),
        (f"/feeds/{token}.atom", "private"),
        (f"/feeds/{token}.rss", "private"),
    ]


def test_every_feed_is_served_with_validators_and_cache_headers(site: Site) -> None:
    person = site.active("ada@example.org", "diffusion")
    for path, scope in feed_paths(person):
        response = site.client.get(path, headers={"accept-encoding": "identity"})
        assert response.status_code == 200, path
        media = "application/atom+xml" if path.endswith(".atom") else "application/rss+xml"
        assert response.headers["content-type"] == f"{media}; charset=utf-8"
        assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
        assert response.headers["last-modified"] == "Tue, 24 Nov 2026 07:00:00 GMT"
        assert response.headers["cache-control"] == f"{scope}, max-age=3600"
        assert response.headers["vary"] == "Accept-Encoding"
        assert "content-encoding" not in response.headers
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo, (path, parsed.bozo_exception)
        assert parsed.entries


def test_a_matching_conditional_get_is_answered_304(site: Site) -> None:
    first = site.client.get("/feeds/all.atom", headers={"accept-encoding": "identity"})
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    later = format_datetime(NOW + timedelta(days=1), usegmt=True)
    earlier = format_datetime(NOW - timedelta(seconds=1), usegmt=True)
    cases = [
        ({"if-none-match": etag}, 304),
        ({"if-none-match": f"W/{etag}"}, 304),
        ({"if-none-match": f'"nope", {etag}'}, 304),
        ({"if-none-match": "*"}, 304),
        ({"if-none-match": etag[:-1] + '-gz"'}, 304),
        ({"if-none-match": '"nope"'}, 200),
        ({"if-modified-since": modified}, 304),
        ({"if-modified-since": later}, 304),
        ({"if-modified-since": earlier}, 200),
        ({"if-modified-since": "yesterday"}, 200),
        ({"if-none-match": '"nope"', "if-modified-since": modified}, 200),  # ETag decides
    ]
    for headers, status in cases:
        response = site.client.get(
            "/feeds/all.atom", headers={**headers, "accept-encoding": "identity"}
        )
        assert response.status_code == status, headers
        if status == 304:
            assert response.content == b""
            assert response.headers["etag"] == etag
            assert response.headers["cache-control"] == "public, max-age=3600"


def test_feeds_are_gzipped_when_asked(site: Site) -> None:
    plain = site.client.get("/feeds/all.rss", headers={"accept-encoding": "identity"})
    with httpx.stream(
        "GET", f"{site.url}/feeds/all.rss", headers={"accept-encoding": "gzip"}
    ) as response:
        raw = b"".join(response.iter_raw())
        headers = response.headers
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(raw) < len(plain.content) / 2
    assert gzip.decompress(raw) == plain.content
    assert headers["etag"] == plain.headers["etag"][:-1] + '-gz"'
    again = site.client.get(
        "/feeds/all.rss", headers={"accept-encoding": "gzip", "if-none-match": headers["etag"]}
    )
    assert again.status_code == 304
    refused = site.client.get("/feeds/all.rss", headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_head_on_a_feed_gives_the_headers_without_the_body(site: Site) -> None:
    full = site.client.get("/feeds/all.atom", headers={"accept-encoding": "identity"})
    head = site.client.head("/feeds/all.atom", headers={"accept-encoding": "identity"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == full.headers["etag"]
    assert head.headers["content-length"] == str(len(full.content))


def test_an_ingest_by_another_process_shows_in_the_feed_a_second_later(
    site: Site, tmp_path: Path
) -> None:
    before = site.client.get("/feeds/all.atom")
    dump = tmp_path / "new-dump.txt"
    text = SEED_FILES[0].read_text(encoding="utf-8")
    dump.write_text(text.replace("Training-free Guidance", "Brand-new Guidance", 1), "utf-8")
    with closing(Store(site.config.storage.database)) as store:
        ingest_files(store, [dump], NOW + timedelta(hours=1))
    site.clock.advance(seconds=FRESH_SECONDS - 0.01)
    assert site.client.get("/feeds/all.atom").headers["etag"] == before.headers["etag"]
    site.clock.advance(seconds=0.01)
    assert site.client.get("/feeds/all.atom").headers["etag"] != before.headers["etag"]


def test_unknown_feeds_are_404(site: Site) -> None:
    person = site.active("ada@example.org")
    token = links.token(person, "feed")
    for path in (
        "/feeds/nothing.atom",
        "/feeds/all.json",
        "/feeds/all",
        "/feeds/.atom",
        "/feeds/topics/unknown.atom",
        "/feeds/topics/diffusion-video.xml",
        f"/feeds/{person.id}-{'0' * 32}.atom",
        f"/feeds/{links.token(person, 'manage')}.atom",
        f"/feeds/{token}.json",
    ):
        assert site.client.get(path).status_code == 404, path


def test_a_private_feed_follows_a_changed_filter(site: Site) -> None:
    person = site.active("ada@example.org", "diffusion")
    path = f"{link_path(person, 'feed')}.atom"
    before = site.client.get(path)
    manage = link_path(person, "manage")
    site.client.post(manage, data={"csrf": site.csrf(manage), "action": "save", "filter": "robot*"})
    after = site.client.get(path, headers={"if-none-match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]


# -- the papers a digest had no room for ------------------------------------------------


def more_line(mail: EmailMessage) -> tuple[int, str]:
    """The count and the link of a digest's "N more papers match" line."""
    found = _MORE.search(text_of(mail))
    assert found, text_of(mail)
    return int(found.group(1)), found.group(2)


def delivered_ids(site: Site, person: Subscriber) -> set[str]:
    with closing(Store(site.config.storage.database)) as store:
        seqs = store.delivered_since(0).get(person.id, set())
        return {paper.id for paper in store.papers(seqs=sorted(seqs))}


def test_n_more_papers_leads_to_a_page_that_lists_exactly_those_n(make_site: MakeSite) -> None:
    site = make_site(digest={"max_papers": 5})
    person = site.active("ada@example.org", "diffusion OR model")
    [mail] = site.send_digests()
    count, url = more_line(mail)
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert f'href="{url}"' in str(html.get_content())
    page = site.client.get(url)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    listed = _LISTED.findall(page.text)
    assert len(listed) == count > 50  # more than the private feed could ever hold
    sent = delivered_ids(site, person)
    assert len(sent) == 5
    with closing(Store(site.config.storage.database)) as store:
        since = site.clock.now - timedelta(days=site.config.digest.lookback_days)
        window = {m.paper.id for m in backtest.backtest(store, person.filter, since=since)}
    assert set(listed) | sent == window
    assert not set(listed) & sent


def test_an_old_digest_link_keeps_its_own_papers_after_the_next_digest(
    make_site: MakeSite, tmp_path: Path
) -> None:
    site = make_site(digest={"max_papers": 5})
    site.active("ada@example.org", "diffusion")
    [first] = site.send_digests()
    count, url = more_line(first)
    before = _LISTED.findall(site.client.get(url).text)
    assert len(before) == count
    site.clock.advance(days=1)
    dump = tmp_path / "later.txt"
    dump.write_text("".join(f"Diffusion Paper {n}\n{ABSTRACT} diffusion\n" for n in range(8)))
    with closing(Store(site.config.storage.database)) as store:
        assert ingest_files(store, [dump], site.clock.now).files[0].new == 8
    [second] = site.send_digests()
    assert more_line(second)[0] == 3
    assert _LISTED.findall(site.client.get(url).text) == before
    assert len(_LISTED.findall(site.client.get(more_line(second)[1]).text)) == 3


def test_a_more_link_is_404_with_a_wrong_token_or_mark_or_after_unsubscribing(
    make_site: MakeSite,
) -> None:
    site = make_site(digest={"max_papers": 5})
    person = site.active("ada@example.org", "diffusion")
    [mail] = site.send_digests()
    url = more_line(mail)[1]
    path = url.removeprefix(site.url)
    mark = path.rsplit("/", 1)[1]
    wrong = [
        f"/matches/{links.token(person, 'manage')}/{mark}",
        f"/matches/{links.token(person, 'feed')}/{'0' * 16}",
        f"/matches/{links.token(person, 'feed')}/not-a-mark",
        f"/matches/not-a-token/{mark}",
    ]
    for other in wrong:
        assert site.client.get(other).status_code == 404, other
    assert site.client.get(path).status_code == 200
    site.client.post(link_path(person, "unsubscribe"))
    assert site.client.get(path).status_code == 404


# -- papers, health ----------------------------------------------------------------------


def test_a_paper_page_shows_its_trend_history(site: Site) -> None:
    with closing(Store(site.config.storage.database)) as store:
        paper = max(store.papers(), key=lambda p: p.times_seen)
    assert paper.times_seen > 1
    response = site.client.get(f"/papers/{paper.id}")
    assert response.status_code == 200
    html = response.text
    assert f"Trending: seen in {paper.times_seen} listings" in html
    assert html.count("</tr>") == paper.times_seen + 1  # the header row, one per sighting
    assert "<td>#" in html


def test_a_paper_page_shows_listing_dates_and_positions_but_no_file_names(site: Site) -> None:
    with closing(Store(site.config.storage.database)) as store:
        paper = max(store.papers(), key=lambda p: p.times_seen)
        seen = [(s.listing_date or "undated", str(s.position)) for s in store.sightings(paper.seq)]
    assert {date == "undated" for date, _ in seen} == {True, False}  # dated and undated ones
    html = site.client.get(f"/papers/{paper.id}").text
    assert re.findall(r"<tr><td>([^<]*)</td><td>#(\d+)</td>", html) == seen
    for path in SEED_FILES:  # the dumps of the seeded database
        assert path.stem not in html


ZYZZYVA = PaperMeta(
    arxiv_id="2411.01234",
    authors=("Ada Lovelace", "Charles Babbage", "Mary Somerville", "Grace Hopper"),
    categories=("cs.CL", "cs.AI"),
    published="2026-11-20",
    upvotes=42,
    comments=3,
    github="https://github.com/example/zyzzyva",
)


def add_sourced(site: Site, papers: list[tuple[str, PaperMeta]]) -> list[str]:
    """Store papers as a source's response does, at NOW; their ids."""
    with closing(Store(site.config.storage.database)) as store, store.write():
        dump = store.add_dump("hf", "f" * 64, NOW, source="hf")
        batch = [
            Entry.of(i, title, f"Zyzzyva agents, paper {i}, with {ABSTRACT}", i, meta)
            for i, (title, meta) in enumerate(papers, 1)
        ]
        store.finish_dump(dump, "2026-11-24", store.add_entries(dump, [batch], NOW))
    return [entry.paper_id for entry in batch]


def test_a_paper_page_shows_what_its_source_told(site: Site) -> None:
    [paper_id] = add_sourced(site, [("Zyzzyva: agents that plan", ZYZZYVA)])
    html = site.client.get(f"/papers/{paper_id}").text
    assert (
        '<p class="byline">Ada Lovelace, Charles Babbage, Mary Somerville and Grace Hopper</p>'
        in html
    )
    assert (
        "arXiv:2411.01234 · cs.CL, cs.AI · published 2026-11-20 · 42 upvotes · 3 comments" in html
    )
    links = re.findall(r'<a class="link" href="([^"]+)"[^>]*>([^<]+)</a>', html)
    assert links[:4] == [
        ("https://arxiv.org/abs/2411.01234", "Abstract on arXiv"),
        ("https://arxiv.org/pdf/2411.01234", "PDF"),
        ("https://huggingface.co/papers/2411.01234", "Daily Papers"),
        ("https://github.com/example/zyzzyva", "Code (github.com/example/zyzzyva)"),
    ]


def test_a_paper_page_lists_the_first_20_authors_then_how_many_more(site: Site) -> None:
    authors = tuple(f"Author {i}" for i in range(1, 31))
    [paper_id] = add_sourced(
        site, [("Zyzzyva collaboration", PaperMeta(authors=authors, upvotes=1))]
    )
    html = site.client.get(f"/papers/{paper_id}").text
    named = ", ".join(authors[:20])
    assert f'<p class="byline">{named} and 10 more</p>' in html
    assert '<p class="hint">1 upvote</p>' in html
    assert re.search(
        r'<a class="link" href="https://arxiv.org/search/\?query=Zyzzyva%20collaboration[^"]*">Find this paper</a>',
        html,
    )
    assert "arxiv.org/pdf" not in html


def test_a_paper_page_of_a_text_dump_shows_no_source_facts(site: Site) -> None:
    with closing(Store(site.config.storage.database)) as store:
        paper = store.papers(limit=1)[0]
    html = site.client.get(f"/papers/{paper.id}").text
    assert 'class="byline"' not in html
    assert "arXiv:" not in html
    assert ">Find this paper</a>" in html


def test_hostile_author_names_are_text_on_the_paper_page(site: Site) -> None:
    meta = PaperMeta(
        authors=("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "Eve\u202eevil"),
        categories=("<b>cs.CL</b>",),
        published='2026"><script>',
    )
    [paper_id] = add_sourced(site, [("Zyzzyva under attack", meta)])
    html = site.client.get(f"/papers/{paper_id}").text
    assert "<script" not in html
    assert "<img" not in html
    assert "<b>" not in html
    assert "\u202e" not in html
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;, &#34;&gt;&lt;img src=x onerror=alert(1)&gt; and Eve evil"
        in html
    )


def test_the_preview_and_the_more_page_show_bylines(make_site: MakeSite) -> None:
    site = make_site(digest={"max_papers": 1})
    add_sourced(
        site, [("Zyzzyva one", ZYZZYVA), ("Zyzzyva two", PaperMeta(authors=("Grace Hopper",)))]
    )
    preview = site.subscribe("ada@example.org", "zyzzyva", action="preview").text
    assert "Zyzzyva one</a><br>Ada Lovelace, Charles Babbage, Mary Somerville et al.<br>" in preview
    assert "Zyzzyva two</a><br>Grace Hopper<br>" in preview
    site.active("ada@example.org", "zyzzyva")
    [mail] = site.send_digests()
    text = text_of(mail)
    assert (
        "1. Zyzzyva one\n   Ada Lovelace, Charles Babbage, Mary Somerville et al.\n   https://arxiv.org/abs/2411.01234\n"
        in text
    )
    page = site.client.get(more_line(mail)[1]).text
    assert "Zyzzyva two</a><br>Grace Hopper<br>" in page


@pytest.mark.parametrize("ref", ["0000000000000000", "not-an-id", "A" * 16])
def test_an_unknown_paper_is_404(site: Site, ref: str) -> None:
    assert site.client.get(f"/papers/{ref}").status_code == 404


def test_healthz_and_readyz(site: Site) -> None:
    health = site.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "papers": 689,
        "last_ingest": "2026-11-24T07:00:00Z",
        "rejected_dumps": 0,
        "last_rejection": None,
        "sources": {},
    }
    assert site.client.get("/readyz").json() == {"status": "ready"}


def test_healthz_shows_the_operator_the_rejected_dumps(site: Site, tmp_path: Path) -> None:
    with closing(Store(site.config.storage.database)) as store:
        for n, hours in enumerate([1, 3]):
            bad = tmp_path / f"bad-{n}.txt"
            bad.write_text(f"Lonely Title {n}\n")
            assert ingest_files(store, [bad], NOW + timedelta(hours=hours)).rejected == 1
    health = site.client.get("/healthz").json()
    assert health["rejected_dumps"] == 2
    assert health["last_rejection"] == "2026-11-24T10:00:00Z"


def test_healthz_is_503_when_the_database_cannot_be_read(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-database"
    folder.mkdir()
    sock = loopback_socket()
    config = site_config(tmp_path, "http://127.0.0.1")
    app = create_app(config, folder, secret=SECRET)
    with running(app, sock) as url, httpx.Client(base_url=url, verify=TLS) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {
            "status": "error",
            "papers": None,
            "last_ingest": None,
            "rejected_dumps": None,
            "last_rejection": None,
            "sources": None,
        }
        assert client.get("/readyz").status_code == 503
        assert client.get("/papers/0000000000000000").status_code == 503


def test_a_topic_whose_filter_does_not_parse_is_refused_when_the_config_loads() -> None:
    """Refused at load, so a SIGHUP keeps the running config instead of a later job crashing."""
    with pytest.raises(ConfigError, match=re.escape("[[topics]] #1 filter: bad filter")):
        from_mapping({"topics": [{"name": "Broken", "filter": "agents AND"}]})


# -- odds and ends -----------------------------------------------------------------------


def test_wrong_methods_and_big_bodies_are_refused(site: Site) -> None:
    assert site.client.get("/subscribe").status_code == 405
    assert site.client.delete("/feeds/all.atom").status_code == 405
    assert site.client.post("/subscribe", content=b"x" * 20_000).status_code == 413
    assert site.client.get("/no/such/page").status_code == 404


def test_every_page_works_on_a_phone_without_javascript(site: Site) -> None:
    person = site.active("ada@example.org")
    with closing(Store(site.config.storage.database)) as store:
        paper = store.papers(limit=1)[0]
    for path in (
        "/",
        link_path(person, "manage"),
        link_path(person, "unsubscribe"),
        f"/papers/{paper.id}",
        "/no/such/page",
    ):
        response = site.client.get(path)
        assert (
            '<meta name="viewport" content="width=device-width, initial-scale=1">' in response.text
        )
        assert "prefers-color-scheme: dark" in response.text
        assert "<script" not in response.text
        assert response.headers["x-content-type-options"] == "nosniff"


# -- the signing key ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_without_the_secret_a_public_address_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_WEB_SECRET", raising=False)
    config = site_config(tmp_path, "https://digest.example.org")
    with closing(Store(config.storage.database)) as store, pytest.raises(UsageError) as caught:
        resolve_secret(config, store, "0.0.0.0")
    assert "$DIGEST_WEB_SECRET is not set" in str(caught.value)


def test_without_the_secret_loopback_uses_a_key_kept_per_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DIGEST_WEB_SECRET", raising=False)
    config = site_config(tmp_path, "http://127.0.0.1:8080")
    with closing(Store(config.storage.database)) as store:
        first = resolve_secret(config, store, "127.0.0.1")
        assert resolve_secret(config, store, "localhost") == first
    with closing(Store(config.storage.database)) as store:
        assert resolve_secret(config, store, "::1") == first
    other = site_config(tmp_path / "other", "http://127.0.0.1:8080")
    with closing(Store(other.storage.database)) as store:
        assert resolve_secret(other, store, "127.0.0.1") != first
    assert len(first) >= 40
    assert "no $DIGEST_WEB_SECRET: using a key generated for this database" in caplog.text


def test_the_secret_from_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_WEB_SECRET", SECRET)
    config = site_config(tmp_path, "https://digest.example.org")
    with closing(Store(config.storage.database)) as store:
        assert resolve_secret(config, store, "0.0.0.0") == SECRET


def placeholder_key() -> str:
    """The signing key deploy/secrets.env.example ships with."""
    example = (ROOT / "deploy" / "secrets.env.example").read_text(encoding="utf-8")
    found = re.search(r"^DIGEST_WEB_SECRET=(.*)$", example, re.MULTILINE)
    assert found
    return found.group(1)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("placeholder", "is still the placeholder from deploy/secrets.env.example"),
        ("x" * 31, "is too short (31 bytes; at least 32 needed)"),
        ("from-the-environment", "is too short (20 bytes; at least 32 needed)"),
    ],
)
def test_a_short_or_placeholder_key_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    monkeypatch.setenv("DIGEST_WEB_SECRET", placeholder_key() if key == "placeholder" else key)
    with closing(loopback_socket()) as probe:
        port = probe.getsockname()[1]
    config = site_config(tmp_path, f"http://127.0.0.1:{port}", web={"port": port})
    Store(config.storage.database).close()
    for host in ("127.0.0.1", "0.0.0.0"):
        with closing(Store(config.storage.database)) as store, pytest.raises(ConfigError) as err:
            resolve_secret(config, store, host)
        assert str(err.value).startswith(f"$DIGEST_WEB_SECRET {problem}")
        assert "secrets.token_urlsafe(32)" in str(err.value)
    with pytest.raises(ConfigError):
        start_in_thread(config)
    monkeypatch.setenv("DIGEST_WEB_SECRET", "y" * 32)  # 32 bytes will do
    stop = start_in_thread(config)
    stop()


def test_start_in_thread_serves_until_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_WEB_SECRET", SECRET)
    with closing(loopback_socket()) as probe:
        port = probe.getsockname()[1]
    config = site_config(tmp_path, f"http://127.0.0.1:{port}", web={"port": port})
    Store(config.storage.database).close()  # the web front never creates the database
    stop = start_in_thread(config)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", verify=TLS).json()["status"] == "ok"
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", verify=TLS)
