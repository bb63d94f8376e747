"""MIME: every mail digest sends as bytes on the wire, headers and parts.

Presentation (``render``) decides what a mail says; this module turns its text and
HTML and its header values into one RFC 5322 message with CRLF line ends, the
same way for the digests and the web front's confirmation mails.

MIME serialisation, not templating, is the cost (``FIELD_NOTES.md``).  The message
is built with ``email.mime`` under the ``compat32`` policy with CRLF line ends,
about twice as fast as ``EmailPolicy``'s header objects; in exchange every header
value is sanitised here (no CR, LF or other control character gets through).
Bodies are UTF-8 quoted-printable (7-bit safe on any relay), encoded by
``binascii`` in C, and the MIME boundary derives from the Message-ID (QP text can
never contain ``=_``).  Message-IDs sit at the sender's domain and never need a
host name lookup.
"""

import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from io import BytesIO

from digest.addresses import b_words as _b_words
from digest.models import Subscriber

HEADER_LINE = 78
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOST = re.compile(r"[^a-z0-9.-]")


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


# identities ------------------------------------------------------------------------------


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


@lru_cache(maxsize=16)
def sender_domain(sender: str) -> str:
    """The domain of a ``Name <address>`` sender, reduced to host-name characters."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    return (_HOST.sub("", domain.lower()).strip(".-") if at else "") or "localhost"


def boundary(kind: str, message_id: str) -> str:
    """``=_<kind>_`` and a hash of the Message-ID: deterministic, and safe, since
    quoted-printable bodies never contain ``=_``."""
    return f"=_{kind}_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]


# header values ---------------------------------------------------------------------------


def clean(value: str) -> str:
    """One line of plain text: control characters (CR, LF, ...) become spaces, runs collapse."""
    return " ".join(CONTROL.sub(" ", value).split())


def encoded_words(text: str) -> str:
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


def safe_url(value: str) -> str:
    """A URL on one line with no space or ``>``: fit inside ``<...>`` in a header."""
    return clean(value).replace(" ", "%20").replace(">", "%3E")


def date(moment: datetime) -> str:
    """The Date header's value, in UTC."""
    return format_datetime(moment.astimezone(UTC))


# the message -----------------------------------------------------------------------------


def assemble(
    headers: Sequence[tuple[str, str]], text: str, html: str | None, boundary: str
) -> bytes:
    """The whole message: text/plain alone when ``html`` is None, else multipart/alternative
    (text/plain, then text/html) split at ``boundary``; then ``headers`` in order.

    Header values must be prepared already (``clean``, ``encoded_words``, ``mailbox``).
    """
    if html is None:
        message: MIMENonMultipart | MIMEMultipart = _part(text, "plain")
        message["MIME-Version"] = "1.0"
    else:
        message = MIMEMultipart("alternative", boundary=boundary, policy=_POLICY)
        message.attach(_part(text, "plain"))
        message.attach(_part(html, "html"))
    for name, value in headers:
        message[name] = value
    return _flatten(message)


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
