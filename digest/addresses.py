"""Address policy: which addresses are accepted, how they are stored, how they go on the wire.

Refuse at the door, or deliver correctly; never half way:

* A non-ASCII local part (``josé@example.org``) is refused when it is entered (CLI,
  CSV import, config, web sign-up).  Delivering it needs SMTPUTF8 on every hop
  (``FIELD_NOTES.md``), which this service cannot promise; a digest that dies at
  send time is worse than a clear "no" at sign-up.
* An internationalised domain is accepted and *stored in its IDNA form*, lower-cased:
  ``ana@bücher.de`` is stored as ``ana@xn--bcher-kva.de``.  The stored address is
  then plain ASCII, fit for RCPT TO and the ``To:`` header as it is, and both
  spellings are one subscriber.  Lookups (``lookup_forms``) try the input as given,
  its IDNA form and its Unicode form, so a row stored in Unicode by an older
  version is still found.
* A display name may be any text.  In a header it becomes RFC 2047 encoded words with
  the address a plain ``<addr>`` outside them (a relay garbles an address inside an
  encoded word), cut to ``NAME_CHARS`` so no folded line comes near 998 bytes.
* An address stored by an older version that breaks these rules makes ``wire`` and
  ``mailbox`` raise UsageError; the outbox records that one digest as failed.
"""

import base64
import re
from email.utils import formataddr
from typing import TYPE_CHECKING

from digest.errors import UndeliverableAddress, UsageError

NAME_CHARS = 200  # longer display names are cut: a To: header is not the place for an essay
ENCODED_WORD_BYTES = 45  # UTF-8 bytes per encoded word: 60 base64 characters, a 72-char word
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

if TYPE_CHECKING:
    from email_validator import ValidatedEmail


class _Invalid(ValueError):
    """email_validator's refusal, with its message."""


def _validated(address: str, *, smtputf8: bool) -> "ValidatedEmail":
    """The address checked by email_validator, imported here: it compiles large patterns,
    and most commands (an ASCII address looked up, ``status``) never check one."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=smtputf8)
    except EmailNotValidError as err:
        raise _Invalid(str(err)) from None


def normalize(text: str) -> str:
    """The address as stored: syntax-checked, ASCII local part, IDNA domain lower-cased."""
    address = text.strip()
    _require_ascii_local(address)
    try:
        return _ascii_form(address)
    except _Invalid as err:
        raise UsageError(f"{text!r} is not a valid email address: {err}") from None


def lookup_forms(text: str) -> list[str]:
    """The spellings a stored row may have for this address: as given, IDNA, Unicode domain."""
    address = text.strip()
    if address.isascii() and "xn--" not in address.lower():
        return [address]
    try:
        found = _validated(address, smtputf8=True)
    except _Invalid:
        return [address]
    idna = f"{found.local_part}@{found.ascii_domain}"
    return list(dict.fromkeys([address, idna, found.normalized]))


def wire(address: str) -> str:
    """The ASCII form for RCPT TO and headers: an IDN domain in IDNA; raises UsageError."""
    if address.isascii():
        return address
    _require_ascii_local(address)
    try:
        return _ascii_form(address)
    except _Invalid as err:
        raise UsageError(f"{address}: cannot be written in ASCII: {err}") from None


def mailbox(name: str, address: str) -> str:
    """``Name <address>`` in ASCII for a header: the name quoted or encoded, never the address."""
    name, address = _clean(name)[:NAME_CHARS].strip(), wire(_clean(address))
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    return f"{' '.join(b_words(name))} <{address}>"


def b_words(text: str) -> list[str]:
    """``=?utf-8?b?...?=`` words of at most 45 bytes (60 characters) each, split at characters."""
    chunks = [""]
    for char in text:
        if len(chunks[-1].encode()) + len(char.encode()) > ENCODED_WORD_BYTES:
            chunks.append("")
        chunks[-1] += char
    return [f"=?utf-8?b?{base64.b64encode(chunk.encode()).decode()}?=" for chunk in chunks]


def _ascii_form(address: str) -> str:
    found = _validated(address, smtputf8=False)
    return f"{found.local_part}@{found.ascii_domain}"


def _require_ascii_local(address: str) -> None:
    local, at, _ = address.rpartition("@")
    if at and not local.isascii():
        raise UndeliverableAddress(
            f"{address}: addresses with non-ASCII characters before the @ cannot be delivered "
            "by this service; use an ASCII address"
        )


def _clean(value: str) -> str:
    """One line: control characters (CR, LF, ...) become spaces, runs of spaces collapse."""
    return " ".join(_CONTROL.sub(" ", value).split())
