"""What every mail transport shares: the envelope, the outcome, the protocol.

``digest.mailer`` picks a transport (Maildir or SMTP, ``digest.smtp``); the
delivery pool (``digest.delivery``) only ever sees this protocol.  ``send`` never
raises for a problem with one message: it returns an ``Outcome`` that delivery
turns into sent, deferred (try again later) or failed (permanent for that
recipient); an outcome marked ``relay`` was refused for the relay's own reasons
(too big for its size limit) and costs no attempt and no bounce.
"""

import os
import socket
import ssl
from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["sent", "deferred", "failed"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient, as it goes on the wire."""

    sender: str
    recipient: str
    data: bytes
    message_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: failed is permanent, deferred is worth retrying.

    ``relay``: deferred because of the relay, not the recipient or the attempt (the
    message is over its size limit): retrying in this run cannot help, and it must
    not cost the digest an attempt or the subscriber a bounce.
    """

    status: Status
    code: int | None = None
    error: str | None = None
    relay: bool = False


SENT = Outcome("sent")


class Transport(Protocol):
    """What the outbox needs from a backend: open, send each message, close."""

    concurrency: int

    async def __aenter__(self) -> "Transport": ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, envelope: Envelope) -> Outcome: ...


def os_reason(err: BaseException) -> str:
    """The OS's words for an I/O error ("connection refused"), not Python's repr."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return one_line(err.verify_message or str(err)).lower()
    if isinstance(err, ssl.SSLError):
        return one_line(err.reason or str(err)).lower().replace("_", " ")
    if isinstance(err, socket.gaierror):
        return str(err.strerror).lower()
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()
    return one_line(str(err))


def one_line(text: str) -> str:
    return " ".join(text.split())
