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
import ctypes
import itertools
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from digest.config import DeliveryConfig, SmtpConfig
from digest.errors import DeliveryError as DeliveryError
from digest.errors import RelayRefused as RelayRefused
from digest.files import OWNER_ONLY, OWNER_ONLY_DIR, create_exclusive
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


GROUP = 16  # Maildir messages filed together: one thread hand-off and one disk sync


# -- Maildir ------------------------------------------------------------------------------


class MaildirTransport:
    """Files each message into ``path/new``: written to ``tmp/``, made durable, then renamed
    (atomic), so a reader never sees a partial message, even after a power cut.

    Messages are filed in groups: every ``send`` waiting when the writer is free goes
    into one group, written by one thread, made durable by one sync of the file system
    (``syncfs``; ``fsync`` of each file where there is none) and, once renamed, one
    ``fsync`` of ``new/``.  Only then does each ``send`` return: a message reported sent
    is on the disk.  A message cost a thread hand-off and an ``fsync`` of its own
    (about 0.5 ms of CPU at 30,000 subscribers, issue 16); a group of ``concurrency``
    costs one of each, and its sends return together, so delivery marks them in one
    transaction.  A crash resends at most the group in flight; so does an I/O error in
    the middle of a group (the messages of it already in ``new/`` go out again).
    """

    concurrency = GROUP

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open = False
        self._waiting: list[tuple[bytes, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "MaildirTransport":
        try:
            self.path.mkdir(mode=OWNER_ONLY_DIR, parents=True, exist_ok=True)
            for folder in ("tmp", "new", "cur"):
                (self.path / folder).mkdir(mode=OWNER_ONLY_DIR, exist_ok=True)
        except OSError as err:
            raise self._error("cannot open", err) from err
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        if self._writer is not None:  # no thread writes into the Maildir after it is closed
            await asyncio.gather(self._writer, return_exceptions=True)

    async def send(self, envelope: Envelope) -> Outcome:
        """File the message; an I/O error stops the run since every later message would fail too."""
        if not self._open:
            raise RuntimeError("MaildirTransport.send() outside 'async with'")
        filed: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((envelope.data, filed))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        return await filed

    async def _write_groups(self) -> None:
        """File what is waiting, a group at a time, until nothing is."""
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(_file_group, self.path, [data for data, _ in group])
            except OSError as err:
                _settle(group, self._error("cannot write to", err))
            except Exception as err:  # not the disk's: each send fails its digest alone
                _settle(group, err)
            except BaseException:  # cancelled (the loop ends): the sends are too
                for _, filed in group:
                    filed.cancel()
                raise
            else:
                _settle(group, SENT)

    def _error(self, doing: str, err: Exception) -> DeliveryError:
        return DeliveryError(
            f"{doing} the Maildir {self.path}: {os_reason(err)}",
            "check [delivery] maildir, its permissions and free space",
        )


def _settle(
    group: list[tuple[bytes, "asyncio.Future[Outcome]"]], outcome: Outcome | Exception
) -> None:
    """Each send of the group returns ``outcome``, or raises it; one cancelled meanwhile (a
    stop) is left alone: delivery gives its claim back."""
    for _, filed in group:
        if filed.done():
            continue
        if isinstance(outcome, Exception):
            filed.set_exception(outcome)
        else:
            filed.set_result(outcome)


def _file_group(maildir: Path, messages: list[bytes]) -> None:
    """Write each message in ``tmp/`` (owner-only from its creation, whatever the umask),
    make them durable, rename them into ``new/`` and make the renames durable."""
    names, host = [], _host()
    for data in messages:
        name = _unique_name(host)
        # Maildir files hold local (LF) line ends; SMTP's CRLF is a wire format.  A message
        # has CR only before LF (``mime.assemble``): deleting each CR is the same, in 40%
        # of replace's time (58 against 144 us for 84 KB), and drops a stray one.
        create_exclusive(maildir / "tmp" / name, data.translate(None, b"\r"), OWNER_ONLY)
        names.append(name)
    _sync(maildir / "tmp", names)
    for name in names:
        (maildir / "tmp" / name).rename(maildir / "new" / name)
    _fsync(maildir / "new")


def _sync(folder: Path, names: list[str]) -> None:
    """The files ``names`` in ``folder`` on the disk: one ``syncfs`` where Linux has it."""
    if _syncfs is not None:
        handle = os.open(folder, os.O_RDONLY)
        try:
            if _syncfs(handle) == 0:
                return
        finally:
            os.close(handle)
    for name in names:
        _fsync(folder / name)


def _fsync(path: Path) -> None:
    """The file on the disk; for a folder, its entries (the renames into it)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _host() -> str:
    """The host name as a Maildir file name holds it (``/`` and ``:`` escaped, as ``mailbox``
    does): read once a group, not once a message (a system call each)."""
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072")


def _unique_name(host: str) -> str:
    """``time.MusecPpidQn.host``, the Maildir convention (what ``mailbox`` writes): unique
    per process by the counter, across processes by the pid, across hosts by the name."""
    now = time.time()
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_COUNTER)}.{host}"


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(2)`` (Python has no binding), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_COUNTER = itertools.count()
_syncfs = _load_syncfs()
