"""MIME: every mail digest sends as bytes on the wire, headers and parts.

Presentation (``render``) decides what a mail says; this module turns its text and
HTML and its header values into one RFC 5322 message with CRLF line ends, the
same way for the digests and the web front's confirmation mails.

MIME serialisation, not templating, was the cost (``FIELD_NOTES.md``).  A digest has
one of two fixed shapes (text/plain alone, or multipart/alternative of text/plain and
text/html), so its bytes are written here directly, exactly as ``email.mime`` under
``compat32`` with CRLF wrote them (``tests/test_mime.py`` compares the two), in a
fraction of the time.  Every header value is sanitised before it gets here (no CR,
LF or other control character; non-ASCII text as RFC 2047 encoded words); a line
break in a value is refused, so nothing can inject a header through one.
Both parts are 7-bit safe on any relay.  The text part is UTF-8 quoted-printable, the
bytes ``binascii.b2a_qp`` writes, in lines of at most 76 characters.  The HTML part is
7bit: each character past ASCII becomes a character reference (``&#183;``, the
same text to any HTML reader) and its lines stay as they are, under RFC 5322's 998
characters, as Django's mail does; quoted-printable cost three times as much, most of
it cutting the long lines of inline styles and URLs.  An HTML part with a longer line,
a control character or the boundary in it is quoted-printable too.  The MIME boundary
derives from the Message-ID (QP text can never contain ``=_``).  Message-IDs sit at the
sender's domain and never need a host name lookup.
"""

import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.policy import Compat32
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from digest.addresses import b_words as _b_words
from digest.models import Subscriber

HEADER_LINE = 78
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOST = re.compile(r"[^a-z0-9.-]")
_COMPAT32 = Compat32(linesep="\r\n")
QP_LINE = 76  # characters in a quoted-printable line, a soft break's "=" included
_EQUALS = ord("=")
_SEVEN_BIT = bytes([0x09, 0x0A, *range(0x20, 0x7F)])  # the bytes a 7bit HTML part may hold
_LITERAL = _SEVEN_BIT.replace(b"=", b"")  # the bytes quoted-printable writes as they are
_HEX = [b"=%02X" % byte for byte in range(256)]
_MANY = 24  # distinct bytes to escape past which b2a_qp is the faster
# The longest line of a 7bit HTML part: RFC 5322 allows 998 characters, and SpamAssassin's
# LONGLINE fires at 998.
SEVEN_BIT_LINE = 997


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

    Header values must be prepared already (``clean``, ``encoded_words``, ``mailbox``):
    one that holds a line break is refused (``ValueError``).
    """
    if html is None:
        head = _header_lines([*_part_headers("plain"), ("MIME-Version", "1.0"), *headers])
        return head + b"\r\n" + _quoted_printable(text)
    content_type = f'multipart/alternative; boundary="{boundary}"'
    head = _header_lines([("Content-Type", content_type), ("MIME-Version", "1.0"), *headers])
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return b"".join(
        [
            head,
            b"\r\n",
            delimiter,
            _part(text, "plain"),
            b"\r\n",
            delimiter,
            _html_part(html, boundary),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )


def fold(name: str, value: str) -> bytes:
    """``name: value`` as header lines of at most ``HEADER_LINE`` characters where its words
    allow, folded at spaces, each line ending in CRLF.  A value that is not ASCII (a
    caller's slip: values come prepared) is encoded as the email package would."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {name} header")
    if not value.isascii():
        return _COMPAT32.fold_binary(name, value)
    lines: list[str] = []
    line = first = f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > HEADER_LINE and line != first and line.strip():
            lines.append(line)
            line = ""
        line = f"{line} {word}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _header_lines(headers: Sequence[tuple[str, str]]) -> bytes:
    return b"".join(fold(name, value) for name, value in headers)


def _part_headers(subtype: str, encoding: str = "quoted-printable") -> list[tuple[str, str]]:
    return [
        ("Content-Type", f'text/{subtype}; charset="utf-8"'),
        ("Content-Transfer-Encoding", encoding),
    ]


def _part(body: str, subtype: str) -> bytes:
    """One part of a multipart message: its headers, a blank line, its body."""
    return _header_lines(_part_headers(subtype)) + b"\r\n" + _quoted_printable(body)


def _html_part(html: str, boundary: str) -> bytes:
    """The text/html part: 7bit where ``_seven_bit_html`` can write it, else quoted-printable."""
    body = _seven_bit_html(html, boundary)
    if body is None:
        return _part(html, "html")
    return _header_lines(_part_headers("html", "7bit")) + b"\r\n" + body


def _seven_bit_html(html: str, boundary: str) -> bytes | None:
    """``html`` in ASCII with CRLF line ends, every other character as a character reference
    (the length of its quoted-printable ``=C2=B7``); None when it holds a control
    character, a line longer than ``SEVEN_BIT_LINE`` or ``boundary`` (a title can hold
    anything), which quoted-printable carries safely."""
    data = _lf(html).encode("ascii", "xmlcharrefreplace")
    if data.translate(None, _SEVEN_BIT) or boundary.encode("ascii") in data:
        return None
    lines = data.split(b"\n")
    if max(map(len, lines)) > SEVEN_BIT_LINE:
        return None
    return b"\r\n".join(lines)


def _quoted_printable(body: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends: the bytes ``binascii.b2a_qp`` writes
    for text (``tests/test_mime.py`` compares the two), in about two thirds of its time.

    ``b2a_qp`` looks at every byte in turn, and was a fifth of a render worker's time.
    Here the bytes to escape (``=`` and those past ASCII) are replaced one value at a
    time, and only lines longer than a quoted-printable line are cut, where ``b2a_qp``
    cuts them.  A body with control characters, or with more distinct bytes to escape
    than ``_MANY`` (text in a non-Latin script), goes to ``b2a_qp`` itself.
    """
    data = _lf(body).encode()  # b2a_qp would keep a lone CR, and switch to CRLF after a CRLF
    escaped = set(data.translate(None, _LITERAL))
    if escaped:
        if len(escaped) > _MANY or min(escaped) < 0x20 or 0x7F in escaped:
            return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")
        if _EQUALS in escaped:  # first: every "=" after this one starts an escape
            data = data.replace(b"=", _HEX[_EQUALS])
            escaped.discard(_EQUALS)
        for byte in escaped:
            data = data.replace(bytes((byte,)), _HEX[byte])
    if data.endswith((b" ", b"\t")):
        data = data[:-1] + _HEX[data[-1]]
    # A space or tab before a line break is escaped once its line is cut, as b2a_qp
    # does; until then it stands as one control character (none is left in ``data``).
    trailing = b" \n" in data or b"\t\n" in data
    if trailing:
        data = data.replace(b" \n", b"\x00\n").replace(b"\t\n", b"\x01\n")
    lines = [
        line if len(line) < QP_LINE and line != b"." else _qp_line(line)
        for line in data.split(b"\n")
    ]
    encoded = b"\r\n".join(lines)
    if trailing:
        encoded = encoded.replace(b"\x00", _HEX[0x20]).replace(b"\x01", _HEX[0x09])
    return encoded


def _lf(body: str) -> str:
    """``body`` with every line break (CRLF, a lone CR) as LF, before CRLF is written."""
    if "\r" in body:
        return body.replace("\r\n", "\n").replace("\r", "\n")
    return body


def _qp_line(line: bytes) -> bytes:
    """One line of escaped text cut where ``b2a_qp`` cuts it: each piece but the last at
    most ``QP_LINE - 1`` characters and never inside an escape, then the soft break ``=``;
    the last may fill the line when it ends with a character that is not escaped.  A line
    that is one dot is escaped (a relay would take it for the end of the message)."""
    if line == b".":
        return _HEX[ord(".")]
    pieces: list[bytes] = []
    start, size = 0, len(line)
    while size - start > QP_LINE or (size - start == QP_LINE and line[-3] == _EQUALS):
        end = start + QP_LINE - 1
        if line[end - 1] == _EQUALS:
            end -= 1
        elif line[end - 2] == _EQUALS:
            end -= 2
        pieces.append(line[start:end])
        start = end
    pieces.append(line[start:])
    return b"=\r\n".join(pieces)
