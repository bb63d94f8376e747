"""Rendering: one subscriber's digest as HTML, as plain text and as a whole MIME message.

Every mail digest sends is assembled here, on one path: the digests, and the web
front's confirmation (or "already subscribed") mails (``Renderer.confirmation``),
with the same headers' rules (sanitised values, UTC Date, Message-ID at the
sender's domain, Auto-Submitted) and the same MIME parts.

The email is what most users see, so every digest must look right in any client, say
why each paper is in it, and arrive once.  Hence:

* Jinja2 templates in the repo's top-level ``templates/`` (shipped inside the wheel as
  ``digest/templates``).  HTML is autoescaped: nothing from a dump becomes markup.
* The HTML is a one-column table layout whose CSS is inlined by ``css-inline`` (clients
  drop ``<style>``); a kept ``<style>`` adds dark-mode and small-screen rules.  No
  images, no tracking.  The text part carries the same papers, links and footer.
* MIME serialisation, not templating, is the cost (``FIELD_NOTES.md``).  The message is
  built with ``email.mime`` under the ``compat32`` policy with CRLF line ends, about twice
  as fast as ``EmailPolicy``'s header objects; in exchange every header value is
  sanitised here (no CR, LF or other control character gets through).  Bodies are UTF-8
  quoted-printable (7-bit safe on any relay), encoded by ``binascii`` in C, and the
  MIME boundary derives from the Message-ID (QP text can never contain ``=_``).
* ``fit`` keeps every message under 100 KB, where common webmail clips a message.
"""

import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, parseaddr
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

from css_inline import CSSInliner
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from digest.addresses import b_words as _b_words
from digest.addresses import mailbox as _mailbox
from digest.config import Config
from digest.errors import QueryError
from digest.errors import RenderError as RenderError
from digest.links import Links
from digest.match import Match, compile_filter
from digest.models import Subscriber, code_links, paper_url
from digest.query import Node, highlights, terms
from digest.stemming import Stemmer
from digest.store import PaperRow

MAX_BYTES = 100_000
ABSTRACT_CHARS = 450
LATE_HIGHLIGHT = 300  # a first highlight ending after this moves the excerpt to it...
LEAD_CHARS = 100  # ...keeping about this much context before it
TEXT_WIDTH = 72
SUBJECT_CHARS = 78
HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
CONFIRM_HTML_TEMPLATE = "web/confirm_email.html.j2"
CONFIRM_TEXT_TEMPLATE = "web/confirm_email.txt.j2"
ConfirmKind = Literal["confirm", "known"]
CONFIRM_SUBJECTS: dict[ConfirmKind, str] = {
    "confirm": "Confirm your subscription to Paper Digest",
    "known": "You are already subscribed to Paper Digest",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOST = re.compile(r"[^a-z0-9.-]")
_LINE = re.compile(rf"(\S.{{0,{TEXT_WIDTH - 4}}})(?:\s+|$)|(\S+)\s*")  # a line, or a long word
Segment = tuple[str, bool]
HEADER_LINE = 78


class _Policy(Compat32):
    """compat32 with CRLF that writes ASCII header values as given, folded at spaces.

    Every value is prepared here (control characters removed, non-ASCII text as RFC 2047
    encoded words), so the costly generic folding of ``email.header`` is not needed.  A
    line break in a value is refused: nothing can inject a header through a value.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in the {name} header")
        if not value.isascii():
            return super().fold_binary(name, value)
        lines: list[str] = []
        line = first = f"{name}:"
        for word in value.split(" "):
            if len(line) + 1 + len(word) > HEADER_LINE and line != first and line.strip():
                lines.append(line)
                line = ""
            line = f"{line} {word}"
        lines.append(line)
        return (self.linesep.join(lines) + self.linesep).encode("ascii")


_POLICY = _Policy(linesep="\r\n")


class _Generator(BytesGenerator):
    """Writes each body at once instead of two writes per line (a quarter of the time).

    The bodies here end their lines with ``\n`` only (``_part`` ensures it).  Should a
    later Python stop calling this private hook, the output stays the same, only slower.
    """

    def _write_lines(self, lines: str) -> None:
        self.write(lines.replace("\n", "\r\n"))


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


@dataclass(frozen=True, slots=True)
class PaperView:
    """One paper as both templates show it."""

    title: str
    url: str
    badge: str
    matched: str
    segments: tuple[Segment, ...]  # the abstract excerpt; True marks a highlight
    text: str  # the same excerpt, *highlights* starred, wrapped for the text part
    code: tuple[tuple[str, str], ...]  # (url, label) of each repository link


def template_dir() -> Path:
    """``digest/templates`` in an installed wheel, else the source tree's ``templates/``."""
    here = Path(__file__).resolve().parent
    for folder in (here / "templates", here.parent / "templates"):
        if (folder / HTML_TEMPLATE).is_file():
            return folder
    raise RenderError(f"no {HTML_TEMPLATE} beside {here}", "reinstall digest")


def template_environment() -> Environment:
    """The one Jinja2 setup for email and web: autoescaped HTML, strict about undefined names."""
    return Environment(
        loader=FileSystemLoader(template_dir()),
        autoescape=select_autoescape(["html.j2"], default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def message_id(subscriber: Subscriber, paper_ids: Sequence[str], sender: str) -> str:
    """The same subscriber and papers always give the same id, so a retry reuses it.

    An empty digest has no papers to tell days apart: pass something unique in
    ``paper_ids`` then (e.g. ``["empty:2026-11-24"]``).  Never looks up a host name.
    """
    key = "\n".join([str(subscriber.id), subscriber.email.casefold(), *sorted(paper_ids)])
    mark = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"<digest.{subscriber.id}.{mark}@{sender_domain(sender)}>"


def confirmation_id(sender: str) -> str:
    """A fresh Message-ID for a confirmation mail (each request is its own message)."""
    return f"<confirm.{secrets.token_hex(8)}@{sender_domain(sender)}>"


def sender_domain(sender: str) -> str:
    """The domain of a ``Name <address>`` sender, reduced to host-name characters."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    return (_HOST.sub("", domain.lower()).strip(".-") if at else "") or "localhost"


class Renderer:
    """Templates compiled once; one renderer serves every digest of a run (one thread)."""

    def __init__(self, config: Config, *, stemmer: Stemmer | None = None) -> None:
        self.config = config
        self.stemmer = stemmer or Stemmer()
        env = template_environment()
        self._html = env.get_template(HTML_TEMPLATE)
        self._text = env.get_template(TEXT_TEMPLATE)
        self._confirm_html = env.get_template(CONFIRM_HTML_TEMPLATE)
        self._confirm_text = env.get_template(CONFIRM_TEXT_TEMPLATE)
        self._inliner = CSSInliner(load_remote_stylesheets=False)
        name, address = parseaddr(config.delivery.from_)
        self._from = _mailbox(name, address)
        self._list_id = _mailbox(name or "Paper Digest", f"digest.{sender_domain(address)}")

    def subject(self, content: DigestContent) -> str:
        head = _heading(len(content.matches))
        tail = f" — {_day(content.created_at)}"
        room = SUBJECT_CHARS - len(head) - len(": ") - len(tail)
        return f"{head}: {_fit_terms(_filter_terms(content.subscriber.filter), room)}{tail}"

    def html(self, content: DigestContent) -> str:
        return self._render_html(self._context(content))

    def text(self, content: DigestContent) -> str:
        return self._text.render(self._context(content))

    def message(self, content: DigestContent) -> bytes:
        """The whole RFC 5322 message with CRLF line ends: text/plain, then text/html."""
        context = self._context(content)
        text = self._text.render(context)
        if content.subscriber.format == "text":
            message: MIMENonMultipart | MIMEMultipart = _part(text, "plain")
            message["MIME-Version"] = "1.0"
        else:
            message = MIMEMultipart("alternative", boundary=_boundary(content), policy=_POLICY)
            message.attach(_part(text, "plain"))
            message.attach(_part(self._render_html(context), "html"))
        for name, value in self._headers(content, context["subject"]):
            message[name] = value
        return _flatten(message)

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
            "link": _url(link),
            "email": _clean(email),
            "filter": _clean(query),
            "hours": self.config.web.confirm_hours,
            "home": self.config.web.base_url + "/",
            "site": _clean(name) or "Paper Digest",
        }
        boundary = "=_confirm_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]
        message = MIMEMultipart("alternative", boundary=boundary, policy=_POLICY)
        message.attach(_part(self._confirm_text.render(context), "plain"))
        message.attach(_part(self._confirm_html.render(context), "html"))
        for header, value in (
            ("From", self._from),
            ("To", _mailbox("", email)),
            ("Subject", _encoded_words(_clean(CONFIRM_SUBJECTS[kind]))),
            ("Date", format_datetime(created_at.astimezone(UTC))),
            ("Message-ID", _clean(message_id)),
            ("Auto-Submitted", "auto-generated"),
        ):
            message[header] = value
        return _flatten(message)

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
            trial = _keep(content, middle)
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
        return self._inliner.inline(self._html.render(context))

    def _context(self, content: DigestContent) -> dict[str, Any]:
        subscriber = content.subscriber
        node = _filter_node(subscriber.filter)
        more = content.more
        return {
            "subject": self.subject(content),
            "heading": _heading(len(content.matches)),
            "date": _day(content.created_at, year=True),
            "greeting": _clean(subscriber.name) or _clean(subscriber.email),
            "email": _clean(subscriber.email),
            "filter": _clean(subscriber.filter),
            "papers": [self._paper(m, node) for m in content.matches],
            "more": f"{more} more paper{' matches' if more == 1 else 's match'}" if more else "",
            "more_url": content.links.more(content.message_id),
            "links": content.links,
            "health": _health(content.health),
        }

    def _paper(self, match: Match, node: Node | None) -> PaperView:
        paper = match.paper
        abstract = _CONTROL.sub(" ", paper.abstract)
        spans = _outside_links(
            highlights(node, abstract, self.stemmer, "abstract") if node else [],
            abstract,
            paper.links,
        )
        segments = _segments(abstract, spans, *_excerpt(abstract, spans))
        return PaperView(
            title=_clean(paper.title),
            url=paper_url(self.config.digest.paper_url, paper.title),
            badge=_badge(paper),
            matched=", ".join(match.matched),
            segments=segments,
            text=_wrap("".join(f"*{text}*" if marked else text for text, marked in segments)),
            code=code_links(paper.links),
        )

    def _headers(self, content: DigestContent, subject: str) -> list[tuple[str, str]]:
        subscriber, links = content.subscriber, content.links
        unsubscribe = f"<{_url(links.unsubscribe)}>"  # RFC 8058 one-click: https only
        return [
            ("From", self._from),
            ("To", _mailbox(subscriber.name, subscriber.email)),
            ("Subject", _encoded_words(_clean(subject))),
            ("Date", format_datetime(content.created_at.astimezone(UTC))),
            ("Message-ID", _clean(content.message_id)),
            ("List-Id", self._list_id),
            ("List-Unsubscribe", unsubscribe),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Auto-Submitted", "auto-generated"),
            ("Precedence", "bulk"),
        ]


# helpers ---------------------------------------------------------------------------------


def _clean(value: str) -> str:
    """One line of plain text: control characters (CR, LF, ...) become spaces, runs collapse."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _encoded_words(text: str) -> str:
    """RFC 2047: each run of words that are not plain ASCII becomes UTF-8 encoded words."""
    found: list[str] = []
    run: list[str] = []
    for word in [*text.split(" "), ""]:
        if word.isascii() and "=?" not in word:
            if run:
                found.extend(_b_words(" ".join(run)))
                run = []
            found.append(word)
        else:
            run.append(word)
    return " ".join(found[:-1])


def _url(value: str) -> str:
    return _clean(value).replace(" ", "%20").replace(">", "%3E")


def _day(moment: datetime, *, year: bool = False) -> str:
    """``Nov 24`` (or ``Nov 24, 2026``) in UTC, whatever the locale."""
    utc = moment.astimezone(UTC)
    day = f"{_MONTHS[utc.month - 1]} {utc.day}"
    return f"{day}, {utc.year}" if year else day


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
    return [term for term in map(_clean, found) if term]


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


def _badge(paper: PaperRow) -> str:
    if paper.times_seen > 1:
        return f"Trending: seen in {paper.times_seen} listings, best #{paper.best_position}"
    return f"New: listed once at #{paper.best_position}"


def _outside_links(
    spans: list[tuple[int, int]], text: str, links: Sequence[str]
) -> list[tuple[int, int]]:
    """Highlights that are not inside a URL (stars would break it in the text part)."""
    taken = [(at, at + len(url)) for url in links if (at := text.find(url)) >= 0]
    return [s for s in spans if not any(a < s[1] and s[0] < b for a, b in taken)]


def _excerpt(text: str, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """About ``ABSTRACT_CHARS`` of ``text`` cut at spaces, moved to a late first highlight."""
    if len(text) <= ABSTRACT_CHARS:
        return 0, len(text)
    start = 0
    if spans and spans[0][1] > LATE_HIGHLIGHT:
        space = text.find(" ", max(spans[0][0] - LEAD_CHARS, 0), spans[0][0])
        start = space + 1 if space >= 0 else spans[0][0]
    end = start + ABSTRACT_CHARS
    if end >= len(text):
        return start, len(text)
    space = text.rfind(" ", start, end + 1)
    return start, space if space > start else end


def _segments(text: str, spans: list[tuple[int, int]], start: int, end: int) -> tuple[Segment, ...]:
    """``text[start:end]`` split into plain and highlighted runs, with ``…`` where cut."""
    found: list[Segment] = [("…", False)] if start > 0 else []
    at = start
    for first, last in spans:
        first, last = max(first, start), min(last, end)
        if first >= last:
            continue
        if first > at:
            found.append((text[at:first], False))
        found.append((text[first:last], True))
        at = last
    if at < end:
        found.append((text[at:end], False))
    if end < len(text):
        if found and not found[-1][1]:
            found[-1] = (found[-1][0].rstrip(" ,;:"), False)
        found.append(("…", False))
    return tuple(found)


def _wrap(text: str) -> str:
    """Lines of at most ``TEXT_WIDTH`` characters, indented by 3 (a regex: C speed)."""
    return "\n   ".join(line or word for line, word in _LINE.findall(text))


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
    return f"{iso[:10]} {iso[11:16]} UTC" if len(iso) >= 16 else _clean(iso)


def _keep(content: DigestContent, count: int) -> DigestContent:
    dropped = len(content.matches) - count
    return replace(content, matches=content.matches[:count], more=content.more + dropped)


def _boundary(content: DigestContent) -> str:
    """Deterministic, and safe: quoted-printable bodies never contain ``=_``."""
    return "=_digest_" + hashlib.sha256(content.message_id.encode()).hexdigest()[:24]


def _flatten(message: MIMENonMultipart | MIMEMultipart) -> bytes:
    out = BytesIO()
    _Generator(out, mangle_from_=False, policy=_POLICY).flatten(message)
    return out.getvalue()


def _part(body: str, subtype: str) -> MIMENonMultipart:
    """A UTF-8 quoted-printable text part, encoded by binascii (C), not email's Python QP."""
    part = MIMENonMultipart("text", subtype, policy=_POLICY, charset="utf-8")
    del part["MIME-Version"]
    part["Content-Transfer-Encoding"] = "quoted-printable"
    if "\r" in body:  # b2a_qp would keep a lone CR, and switch to CRLF after a CRLF
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    part.set_payload(binascii.b2a_qp(body.encode(), istext=True).decode("ascii"))
    return part
