"""MIME: the bytes written directly are the bytes the email package writes for them.

``digest.mime.assemble`` writes a message's two fixed shapes itself; the reference
here builds the same message with ``email.mime`` under ``compat32`` with CRLF and
flattens it with the email package's own ``BytesGenerator``, as digest did before,
with the HTML part 7bit (character references for what is past ASCII) wherever 7bit
can carry it.  Header values are prepared the way the renderer prepares them, from
hostile text.
"""

import binascii
import email
import email.policy
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from html.parser import HTMLParser
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import mime
from digest.addresses import mailbox


class _Reference(Compat32):
    """compat32 with CRLF, folding each header the one way digest folds it (as before)."""

    def fold_binary(self, name: str, value: str) -> bytes:
        return mime.fold(name, value)


REFERENCE = _Reference(linesep="\r\n")


def reference(headers: list[tuple[str, str]], text: str, html: str | None, split: str) -> bytes:
    """The message as ``email.mime`` builds it and ``BytesGenerator`` writes it."""
    if html is None:
        message: MIMENonMultipart | MIMEMultipart = part(text, "plain")
        message["MIME-Version"] = "1.0"
    else:
        message = MIMEMultipart("alternative", boundary=split, policy=REFERENCE)
        message.attach(part(text, "plain"))
        message.attach(html_part(html, split))
    for name, value in headers:
        message[name] = value
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=REFERENCE).flatten(message)
    return out.getvalue()


def part(body: str, subtype: str) -> MIMENonMultipart:
    found = MIMENonMultipart("text", subtype, policy=REFERENCE, charset="utf-8")
    del found["MIME-Version"]
    found["Content-Transfer-Encoding"] = "quoted-printable"
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    found.set_payload(binascii.b2a_qp(body.encode(), istext=True).decode("ascii"))
    return found


def html_part(body: str, split: str) -> MIMENonMultipart:
    """7bit, each character past ASCII a character reference, when that holds no control
    character, no line over 997 characters and not the boundary; else quoted-printable."""
    written = body.replace("\r\n", "\n").replace("\r", "\n").encode("ascii", "xmlcharrefreplace")
    controls = any((byte < 0x20 and byte not in b"\t\n") or byte == 0x7F for byte in written)
    longest = max(len(line) for line in written.split(b"\n"))
    if controls or longest > 997 or split.encode() in written:
        return part(body, "html")
    found = MIMENonMultipart("text", "html", policy=REFERENCE, charset="utf-8")
    del found["MIME-Version"]
    found["Content-Transfer-Encoding"] = "7bit"
    found.set_payload(written.decode("ascii"))
    return found


MESSAGE_ID = "<digest.12.3f9a0c1d2e4b5a6f@example.org>"
SPLIT = mime.boundary("digest", MESSAGE_ID)
TRICKY = ["From me", ".", "..", "\r\n", "\r", "\n", "=_x", " \t", "x" * 200, "é" * 90, "\u2028"]
TRICKY += ["x" * 997, "x" * 998, f"--{SPLIT}--", "\x0b"]  # where the HTML part is not 7bit
bodies = st.lists(st.one_of(st.text(max_size=40), st.sampled_from(TRICKY)), max_size=12).map(
    "".join
)
words = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(["x" * 90, "Ünïcødé"])))


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(max_size=80),
    subject=words.map(" ".join),
    url=st.text(max_size=120),
    text=bodies,
    html=st.none() | bodies,
)
def test_a_message_is_the_bytes_the_email_package_writes(
    name: str, subject: str, url: str, text: str, html: str | None
) -> None:
    message_id = MESSAGE_ID
    headers = [
        ("From", mailbox("Paper Digest", "digest@example.org")),
        ("To", mailbox(name, "ada@example.org")),
        ("Subject", mime.encoded_words(mime.clean(subject))),
        ("Date", mime.date(datetime(2026, 11, 24, 7, tzinfo=UTC))),
        ("Message-ID", message_id),
        ("List-Unsubscribe", f"<{mime.safe_url(url)}>"),
        ("Precedence", "bulk"),
    ]
    data = mime.assemble(headers, text, html, SPLIT)
    assert data == reference(headers, text, html, SPLIT)
    # A CR only ever ends a line: the Maildir writer relies on it (digest.mailer).
    assert b"\r" not in data.replace(b"\r\n", b"")


class Text(HTMLParser):
    """The text an HTML reader shows (character references resolved), tags dropped."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.feed(html)
        self.close()

    def handle_data(self, data: str) -> None:
        self.text += data


def html_of(data: bytes) -> tuple[str, str]:
    """The HTML part of a message as a mail reader decodes it, and its transfer encoding."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    found = message.get_body(preferencelist=("html",))
    assert found is not None
    return str(found.get_content()).replace("\r\n", "\n"), str(found["Content-Transfer-Encoding"])


def test_an_html_part_is_7bit_with_each_character_past_ascii_as_a_reference() -> None:
    html = '<p title="Grüße">Grüße · naïve — 😀 <b>x=1</b></p>\n' + "<i>é</i> " * 70
    data = mime.assemble([("Subject", "x")], "text", html, SPLIT)
    shown, encoding = html_of(data)
    assert encoding == "7bit"
    assert data.isascii()
    assert "Gr&#252;&#223;e &#183; na&#239;ve &#8212; &#128512;" in shown
    assert Text(shown).text == Text(html).text
    assert b"\r\n" + b"<i>&#233;</i> " * 70 + b"\r\n" in data  # 980 characters, not cut


def test_an_html_line_of_997_characters_is_7bit() -> None:
    html = "<p>" + "x" * 990 + "</p>"
    assert html_of(mime.assemble([("Subject", "x")], "text", html, SPLIT)) == (html, "7bit")


@pytest.mark.parametrize(
    "html",
    [
        "<p>" + "x" * 991 + "</p>",  # a line of 998 characters: SpamAssassin's LONGLINE
        "<p>a\x0bb\x00c</p>",  # control characters
        f"<p>--{SPLIT}--</p>\n<p>--{SPLIT}</p>",  # the boundary, in a title say
    ],
    ids=["998 characters", "controls", "the boundary"],
)
def test_an_html_part_7bit_cannot_carry_is_quoted_printable(html: str) -> None:
    data = mime.assemble([("Subject", "x")], "text", html, SPLIT)
    shown, encoding = html_of(data)
    assert encoding == "quoted-printable"
    assert shown == html
    assert max(len(line) for line in data.split(b"\r\n")) <= 76


@pytest.mark.parametrize("value", ["a\r\nBcc: eve@example.org", "a\nb", "a\rb"])
def test_a_header_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break in the Subject header"):
        mime.assemble([("Subject", value)], "text", None, "=_x")


def test_a_header_value_not_in_ascii_is_encoded_as_the_email_package_does() -> None:
    assert mime.fold("Subject", "Grüße") == b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n"


def b2a_qp(body: str) -> bytes:
    """What digest wrote before: line breaks made LF, ``binascii.b2a_qp`` on the UTF-8,
    then CRLF."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(body.encode(), istext=True).replace(b"\n", b"\r\n")


# Lines around the 76-character limit, made of what the encoder treats apart: "=",
# bytes past ASCII (up to 4 each), dots, spaces and tabs (escaped only at a line's end).
line_parts = st.sampled_from(["a", "=", "é", "—", "😀", ".", " ", "\t", "x" * 70, "é" * 30])
lines = st.lists(line_parts, max_size=60).map("".join)
near_the_limit = st.lists(lines, max_size=6).map("\n".join)


@settings(max_examples=2_000, deadline=None)
@given(body=near_the_limit | bodies)
def test_a_body_is_encoded_to_the_bytes_b2a_qp_writes(body: str) -> None:
    assert mime._quoted_printable(body) == b2a_qp(body)


@pytest.mark.parametrize(
    "body",
    [
        "".join(chr(0x4E00 + n) for n in range(40)) + "=" * 3,  # many distinct bytes: b2a_qp
        "a\x00b\x1bc\x7f.\x00\n",  # control characters: b2a_qp
        "x" * 75 + " \n" + "x" * 74 + "=\n" + "x" * 73 + "é\n" + "x" * 76,
        ".\n. \n.\t\n..\n.",
    ],
)
def test_a_body_either_way_is_encoded_to_the_bytes_b2a_qp_writes(body: str) -> None:
    encoded = mime._quoted_printable(body)
    assert encoded == b2a_qp(body)
    assert binascii.a2b_qp(encoded).decode().replace("\r\n", "\n") == body
