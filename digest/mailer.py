"""Mail transports: where a rendered digest goes when it leaves the outbox.

Two backends behind one small protocol (``digest.transport``).  ``MaildirTransport``
files each message into a local Maildir (the default, so a fresh checkout runs
with no mail server); ``SmtpTransport`` (``digest.smtp``) hands it to a relay with
aiosmtplib over a pool of reused connections.  ``send`` never raises for a
problem with one message: it returns an ``Outcome``.  A transport that cannot
work at all -- relay unreachable, login refused, TLS broken, Maildir unwritable --
raises ``DeliveryError`` with one line saying what to fix, and the digests stay
queued; ``RelayRefused`` is the relay turning every message away for now (every
connection refused at the greeting, out of storage or over its rate at MAIL FROM).

This module picks the transport the configuration asks for, and holds the Maildir one.
"""

import asyncio
import mailbox
import os
import threading
from pathlib import Path
from typing import BinaryIO

from digest.config import DeliveryConfig, SmtpConfig
from digest.errors import DeliveryError as DeliveryError
from digest.errors import RelayRefused as RelayRefused
from digest.files import OWNER_ONLY
from digest.smtp import SmtpTransport as SmtpTransport
from digest.transport import SENT as SENT
from digest.transport import Envelope as Envelope
from digest.transport import Outcome as Outcome
from digest.transport import Status as Status
from digest.transport import Transport as Transport
from digest.transport import os_reason


def transport_for(delivery: DeliveryConfig, smtp: SmtpConfig) -> Transport:
    """The transport the configuration asks for, not yet opened."""
    if delivery.backend == "smtp":
        return SmtpTransport(smtp, password=smtp.password())
    return MaildirTransport(delivery.maildir)


# -- Maildir ------------------------------------------------------------------------------


class MaildirTransport:
    """Writes each message into ``path/new`` (via ``tmp/``, fsynced, then linked: atomic).

    Four at a time, each in a thread: the cost of a message here is waiting for its
    fsync, and the disk takes several at once.
    """

    concurrency = 4

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box: mailbox.Maildir | None = None

    async def __aenter__(self) -> "MaildirTransport":
        try:
            self._box = _PrivateMaildir(self.path, create=True)
        except OSError as err:
            raise self._error("cannot open", err) from err
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._box = None

    async def send(self, envelope: Envelope) -> Outcome:
        """File the message; an I/O error stops the run since every later message would fail too."""
        if self._box is None:
            raise RuntimeError("MaildirTransport.send() outside 'async with'")
        try:
            # Maildir files hold local (LF) line ends; SMTP's CRLF is a wire format.
            await asyncio.to_thread(self._box.add, envelope.data.replace(b"\r\n", b"\n"))
        except (OSError, mailbox.Error) as err:
            raise self._error("cannot write to", err) from err
        return SENT

    def _error(self, doing: str, err: Exception) -> DeliveryError:
        return DeliveryError(
            f"{doing} the Maildir {self.path}: {os_reason(err)}",
            "check [delivery] maildir, its permissions and free space",
        )


class _PrivateMaildir(mailbox.Maildir):
    """A Maildir whose message files are 0600 from their creation in tmp/, whatever the
    umask (``mailbox`` makes them 0666 & ~umask): a digest holds the reader's private links.
    Its folders are already 0700 (``mailbox`` creates them so)."""

    _naming = threading.Lock()  # the unique name counts on a class counter: one at a time

    def _create_tmp(self) -> BinaryIO:
        with self._naming:
            handle: BinaryIO = super()._create_tmp()  # type: ignore[misc]
        os.fchmod(handle.fileno(), OWNER_ONLY)
        return handle
