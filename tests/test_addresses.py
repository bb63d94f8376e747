"""Address policy: refuse a non-ASCII local part at the door; store and send an IDN domain as IDNA;
encode a display name as a name, never the address, in header lines far under 998 bytes."""

import dataclasses
import email
import email.policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr

import pytest

from digest import addresses
from digest.errors import UsageError
from digest.render import Renderer

from .test_render import ADA, CONFIG, content_for, paper

REFUSED_LOCAL = "non-ASCII characters before the @ cannot be delivered by this service"

NORMALIZED = [
    ("ada@example.org", "ada@example.org"),
    ("  Ada@Example.ORG ", "Ada@example.org"),
    ("ana@bücher.de", "ana@xn--bcher-kva.de"),
    ("ana@xn--bcher-kva.de", "ana@xn--bcher-kva.de"),
    ("ANA@BÜCHER.DE", "ANA@xn--bcher-kva.de"),
    ("kim@例え.jp", "kim@xn--r8jz45g.jp"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "stored"), NORMALIZED)
def test_an_address_is_stored_ascii_with_an_idn_domain_in_idna_form(
    given: str, stored: str
) -> None:
    assert addresses.normalize(given) == stored


REFUSED = [
    ("josé@example.org", REFUSED_LOCAL),
    ("josé@bücher.de", REFUSED_LOCAL),
    ("用户@例え.jp", REFUSED_LOCAL),
    ("not an address", "is not a valid email address"),
    ("ana@xn--zz.de", "is not a valid email address"),
    ("ana@", "is not a valid email address"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "message"), REFUSED)
def test_an_address_that_cannot_be_delivered_is_refused_with_a_clear_message(
    given: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message) as refused:
        addresses.normalize(given)
    assert given in str(refused.value)


WIRE = [
    ("ada@example.org", "ada@example.org"),
    ("ana@bücher.de", "ana@xn--bcher-kva.de"),  # stored in Unicode by an older version
    ("digest.example.org", "digest.example.org"),  # a List-Id: no @ at all
]  # fmt: skip


@pytest.mark.parametrize(("stored", "sent"), WIRE)
def test_the_wire_form_is_ascii(stored: str, sent: str) -> None:
    assert addresses.wire(stored) == sent


def test_the_wire_form_of_a_non_ascii_local_part_is_an_error_not_a_crash() -> None:
    with pytest.raises(UsageError, match=REFUSED_LOCAL):
        addresses.wire("josé@example.org")


LOOKUPS = [
    ("ada@example.org", ["ada@example.org"]),
    ("ana@bücher.de", ["ana@bücher.de", "ana@xn--bcher-kva.de"]),
    ("ana@xn--bcher-kva.de", ["ana@xn--bcher-kva.de", "ana@bücher.de"]),
    ("josé@example.org", ["josé@example.org"]),  # a row an older version stored
    ("nonsense", ["nonsense"]),
]  # fmt: skip


@pytest.mark.parametrize(("given", "forms"), LOOKUPS)
def test_a_lookup_tries_both_spellings_of_an_idn_domain(given: str, forms: list[str]) -> None:
    assert addresses.lookup_forms(given) == forms


def header(value: str) -> EmailMessage:
    parsed = email.message_from_bytes(
        b"To: " + value.encode("ascii") + b"\r\n\r\n", policy=email.policy.default
    )
    assert isinstance(parsed, EmailMessage)
    return parsed


MAILBOXES = [
    ("Ada Lovelace", "ada@example.org", "Ada Lovelace", "ada@example.org"),
    ("Lovelace, Ada", "ada@example.org", "Lovelace, Ada", "ada@example.org"),
    ("Zoë Ünal", "zoe@example.org", "Zoë Ünal", "zoe@example.org"),
    ("José, \"Pepe\" Núñez", "jose@example.org", "José, \"Pepe\" Núñez", "jose@example.org"),
    ("山田 太郎", "taro@例え.jp", "山田 太郎", "taro@xn--r8jz45g.jp"),
    ("=?utf-8?q?not_a_word?=", "ada@example.org", "=?utf-8?q?not_a_word?=", "ada@example.org"),
    ("", "ana@bücher.de", "", "ana@xn--bcher-kva.de"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "address", "shown", "addr_spec"), MAILBOXES)
def test_a_mailbox_is_ascii_and_parses_back_to_the_name_and_the_address(
    name: str, address: str, shown: str, addr_spec: str
) -> None:
    value = addresses.mailbox(name, address)
    assert value.isascii()
    parsed = header(value)
    (mailbox,) = parsed["To"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (shown, addr_spec)
    assert parsed.defects == []
    assert parsed["To"].defects == ()


LONG_NAMES = ["A" * 2000, "É" * 2000, "Ada " * 500, "名" * 2000]


@pytest.mark.parametrize("name", LONG_NAMES, ids=["ascii", "latin", "words", "cjk"])
def test_a_2000_character_name_keeps_every_header_line_under_998_bytes(name: str) -> None:
    person = dataclasses.replace(ADA, name=name, email="ana@bücher.de")
    data = Renderer(CONFIG).message(content_for([paper(1)], subscriber=person))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) < 998
    shown = " ".join(name.split())[: addresses.NAME_CHARS].strip()
    raw_to = email.message_from_bytes(data)["To"]  # compat32: the header as written
    assert parseaddr(str(make_header(decode_header(raw_to)))) == (shown, "ana@xn--bcher-kva.de")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    (mailbox,) = parsed["To"].addresses
    assert mailbox.addr_spec == "ana@xn--bcher-kva.de"
    # CPython's address parser keeps the space between adjacent encoded words, which
    # RFC 2047 (6.2) says to drop (decode_header above drops it): compare without spaces.
    assert mailbox.display_name.replace(" ", "") == shown.replace(" ", "")
    assert parsed.defects == []
    assert parsed["To"].defects == ()


def test_a_non_ascii_name_in_the_to_header_of_a_digest_parses_back_without_defects() -> None:
    person = dataclasses.replace(ADA, name="Zoë Ünal-Łukasiewicz", email="zoe@example.org")
    data = Renderer(CONFIG).message(content_for([paper(1)], subscriber=person))
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    (mailbox,) = parsed["To"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == ("Zoë Ünal-Łukasiewicz", "zoe@example.org")
    assert parsed.defects == []
    assert parsed["To"].defects == ()
    assert b" <zoe@example.org>\r\n" in data  # plain, outside any encoded word
