"""Rendering: one subscriber's digest as HTML, as plain text and as a whole MIME message.

Every mail digest sends is written here: the digests, and the web front's
confirmation (or "already subscribed") mails (``Renderer.confirmation``), with the
same headers' rules (sanitised values, UTC Date, Message-ID at the sender's domain,
Auto-Submitted); ``digest.mime`` assembles each into one message, on one path.

The email is what most users see, so every digest must look right in any client, say
why each paper is in it, and arrive once.  Hence:

* Jinja2 templates in the repo's top-level ``templates/`` (shipped inside the wheel as
  ``digest/templates``).  HTML is autoescaped: nothing from a dump becomes markup.
* The HTML is a one-column table layout whose CSS is inlined by ``css-inline`` (clients
  drop ``<style>``), into the template, once (``digest.inlining``); a kept ``<style>``
  adds dark-mode and small-screen rules.  No images, no tracking.  The text part
  carries the same papers, links and footer.
* Each paper's view (``digest.paper_views``) is made of its own parts, kept across the
  digests of a renderer, and its reader's (highlights, excerpt, feedback links).
* ``digest.mime`` writes the bytes: a quoted-printable text part, a 7bit HTML part, CRLF.
* ``fit`` keeps every message under 100 KB, where common webmail clips a message.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from digest.addresses import mailbox as _mailbox
from digest.config import Config
from digest.dates import month_day
from digest.errors import QueryError
from digest.errors import RenderError as RenderError
from digest.inlining import inlined
from digest.links import Links
from digest.match import Match, Suggestion, compile_filter
from digest.mime import assemble, boundary, clean, date, encoded_words, safe_url
from digest.mime import confirmation_id as confirmation_id
from digest.mime import message_id as message_id
from digest.mime import sender_domain as sender_domain
from digest.models import Subscriber
from digest.paper_links import byline
from digest.paper_views import PaperViews
from digest.query import Node, terms

MAX_BYTES = 100_000
SUBJECT_CHARS = 78
LEARNED_NOTE = "In the order your likes taught your relevance model; trending breaks ties."
HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
CONFIRM_HTML_TEMPLATE = "web/confirm_email.html.j2"
CONFIRM_TEXT_TEMPLATE = "web/confirm_email.txt.j2"
ConfirmKind = Literal["confirm", "known"]
CONFIRM_SUBJECTS: dict[ConfirmKind, str] = {
    "confirm": "Confirm your subscription to Paper Digest",
    "known": "You are already subscribed to Paper Digest",
}


@dataclass(frozen=True, slots=True)
class Health:
    """How fresh the papers are, for the footer: only what affects what the reader got.

    Rejected dumps are the operator's business (``digest status``, the log, ``/healthz``).
    """

    last_ingest_at: str | None  # ISO UTC of the newest ingested dump, None if never
    stale: bool  # the newest ingest is older than a day


@dataclass(frozen=True, slots=True)
class DigestContent:
    """Everything one digest shows; ``matches`` are already ranked and capped."""

    subscriber: Subscriber
    matches: list[Match]
    more: int  # matches beyond the cap
    links: Links
    health: Health
    created_at: datetime  # aware; the Date header and the subject's date
    message_id: str  # "<digest.12.3f9a0c1d2e4b5a6f@example.org>", from ``message_id``
    learned: bool = False  # ordered by the reader's relevance model (a line in the header)
    suggestions: tuple[Suggestion, ...] = ()  # "You may also like": the filter missed these


def template_dir() -> Path:
    """``digest/templates`` in an installed wheel, else the source tree's ``templates/``."""
    here = Path(__file__).resolve().parent
    for folder in (here / "templates", here.parent / "templates"):
        if (folder / HTML_TEMPLATE).is_file():
            return folder
    raise RenderError(f"no {HTML_TEMPLATE} beside {here}", "reinstall digest")


@lru_cache(maxsize=1)
def template_environment() -> Environment:
    """The one Jinja2 setup for email and web: autoescaped HTML, strict about undefined names.

    One per process, so each template is compiled once however many renderers and apps
    are made (compiling is most of what making one costs); Jinja2 environments are
    thread-safe and, with ``auto_reload`` off, never change once a template is loaded.
    ``byline`` is a filter (``paper.meta.authors|byline``) for the pages that list papers
    as rows: the one rule for a short byline, wherever a template needs it.
    """
    env = Environment(
        loader=FileSystemLoader(template_dir()),
        autoescape=select_autoescape(["html.j2"], default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["byline"] = byline
    return env


class Renderer:
    """Templates compiled once; one renderer serves every digest of a run (one thread)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        env = template_environment()
        self._env = env
        self._html = inlined(env, HTML_TEMPLATE)
        self._text = env.get_template(TEXT_TEMPLATE)
        self._views = PaperViews(config.digest.paper_url)
        name, address = parseaddr(config.delivery.from_)
        self._from = _mailbox(name, address)
        self._list_id = _mailbox(name or "Paper Digest", f"digest.{sender_domain(address)}")

    def subject(self, content: DigestContent) -> str:
        head = _heading(len(content.matches))
        tail = f" — {month_day(content.created_at)}"
        room = SUBJECT_CHARS - len(head) - len(": ") - len(tail)
        return f"{head}: {_fit_terms(_filter_terms(content.subscriber.filter), room)}{tail}"

    def html(self, content: DigestContent) -> str:
        return self._render_html(self.context(content))

    def text(self, content: DigestContent) -> str:
        return self._text.render(self.context(content))

    def message(self, content: DigestContent) -> bytes:
        """The whole RFC 5322 message with CRLF line ends: text/plain, then text/html."""
        context = self.context(content)
        text = self._text.render(context)
        html = None if content.subscriber.format == "text" else self._render_html(context)
        headers = self._headers(content, context["subject"])
        return assemble(headers, text, html, boundary("digest", content.message_id))

    def confirmation(
        self,
        kind: ConfirmKind,
        email: str,
        query: str,
        link: str,
        created_at: datetime,
        message_id: str,
    ) -> bytes:
        """The web front's mail for a sign-up: ``link`` confirms ``query``, or manages.

        Text and HTML from ``templates/web/confirm_email.*``.  Uses only the
        compiled templates, so the web front's threads may share one renderer.
        """
        name = parseaddr(self.config.delivery.from_)[0]
        context = {
            "kind": kind,
            "link": safe_url(link),
            "email": clean(email),
            "filter": clean(query),
            "hours": self.config.web.confirm_hours,
            "home": self.config.web.base_url + "/",
            "site": clean(name) or "Paper Digest",
        }
        headers = [
            ("From", self._from),
            ("To", _mailbox("", email)),
            ("Subject", encoded_words(clean(CONFIRM_SUBJECTS[kind]))),
            ("Date", date(created_at)),
            ("Message-ID", clean(message_id)),
            ("Auto-Submitted", "auto-generated"),
        ]
        # compiled on the first confirmation: a send or a preview never renders one
        text = self._env.get_template(CONFIRM_TEXT_TEMPLATE).render(context)
        html = self._env.get_template(CONFIRM_HTML_TEMPLATE).render(context)
        return assemble(headers, text, html, boundary("confirm", message_id))

    def fit(self, content: DigestContent) -> tuple[DigestContent, bytes]:
        """The message under ``MAX_BYTES``: papers move from the end of ``matches`` to ``more``.

        Returns the content actually rendered, so the caller records exactly the papers
        sent.  The Message-ID stays the caller's: the same content always fits the same way.
        """
        whole = self.message(content)
        if len(whole) < MAX_BYTES:
            return content, whole
        best: tuple[DigestContent, bytes] | None = None
        low, high = 0, len(content.matches) - 1
        while low <= high:  # the most papers that fit: size grows with each paper
            middle = (low + high) // 2
            trial = first(content, middle)
            data = self.message(trial)
            if len(data) < MAX_BYTES:
                best, low = (trial, data), middle + 1
            else:
                high = middle - 1
        if best is None:
            raise RenderError(f"{content.message_id}: over {MAX_BYTES:,} bytes with no papers")
        return best

    # the parts -------------------------------------------------------------------------

    def _render_html(self, context: dict[str, Any]) -> str:
        return self._html.render(context)

    def context(self, content: DigestContent) -> dict[str, Any]:
        """What both templates are given: every value of the digest, cleaned."""
        subscriber = content.subscriber
        more = content.more
        return {
            "subject": self.subject(content),
            "heading": _heading(len(content.matches)),
            "date": month_day(content.created_at, year=True),
            "greeting": clean(subscriber.name) or clean(subscriber.email),
            "email": clean(subscriber.email),
            "filter": clean(subscriber.filter),
            "papers": [self._views.view(m, content.links) for m in content.matches],
            "more": f"{more} more paper{' matches' if more == 1 else 's match'}" if more else "",
            "more_url": content.links.more(content.message_id),
            "links": content.links,
            "health": _health(content.health),
            "learned": LEARNED_NOTE if content.learned and content.matches else "",
            "suggestions": [
                replace(self._views.view(s.match, content.links), because=clean(s.because))
                for s in content.suggestions
            ],
        }

    def _headers(self, content: DigestContent, subject: str) -> list[tuple[str, str]]:
        subscriber, links = content.subscriber, content.links
        unsubscribe = f"<{safe_url(links.unsubscribe)}>"  # RFC 8058 one-click: https only
        return [
            ("From", self._from),
            ("To", _mailbox(subscriber.name, subscriber.email)),
            ("Subject", encoded_words(clean(subject))),
            ("Date", date(content.created_at)),
            ("Message-ID", clean(content.message_id)),
            ("List-Id", self._list_id),
            ("List-Unsubscribe", unsubscribe),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Auto-Submitted", "auto-generated"),
            ("Precedence", "bulk"),
        ]


# helpers ---------------------------------------------------------------------------------


def _heading(count: int) -> str:
    return f"{count} new paper{'' if count == 1 else 's'}" if count else "No new papers"


def _filter_node(query: str) -> Node | None:
    try:
        return compile_filter(query)
    except QueryError:
        return None


def _filter_terms(query: str) -> list[str]:
    """The positive terms as written; the raw filter when it no longer parses."""
    node = _filter_node(query)
    found = terms(node) if node is not None else [query]
    return [term for term in map(clean, found) if term]


def _fit_terms(found: list[str], room: int) -> str:
    """As many terms as fit in ``room`` characters, then ``…``."""
    joined = ", ".join(found)
    if len(joined) <= room:
        return joined
    kept = list(found)
    while kept and len(", ".join(kept)) + len(", …") > room:
        kept.pop()
    if kept:
        return ", ".join(kept) + ", …"
    return found[0][: max(room - 1, 1)].rstrip() + "…"


def _health(health: Health) -> list[tuple[str, bool]]:
    """Footer lines about ingest freshness; True marks a warning."""
    when = _when(health.last_ingest_at or "")
    if health.last_ingest_at is None:
        return [("No listing has been ingested yet: there were no papers to match.", True)]
    if health.stale:
        return [(f"No new listing has arrived since {when}.", True)]
    return [(f"Papers as of the newest listing, ingested {when}.", False)]


def _when(iso: str) -> str:
    """``2026-11-24T07:00:00Z`` as ``2026-11-24 07:00 UTC``."""
    return f"{iso[:10]} {iso[11:16]} UTC" if len(iso) >= 16 else clean(iso)


def first(content: DigestContent, count: int) -> DigestContent:
    """The content with only its first ``count`` papers: the others count in ``more``."""
    dropped = len(content.matches) - count
    return replace(content, matches=content.matches[:count], more=content.more + dropped)
