"""The SMTP transport: a pool of reused aiosmtplib connections to one relay.

Each reply or error becomes an ``Outcome``: 5xx failed, 4xx and network trouble
deferred, the relay's size limit held (no attempt, no bounce).  What makes every
message fail -- unreachable, login refused, TLS broken, the sender refused --
raises ``DeliveryError`` with one line naming the setting to check;
``RelayRefused`` is the relay turning every message away for now (every
connection refused at the greeting, out of storage or over its rate at MAIL FROM).

This is the only module that imports aiosmtplib.
"""

import asyncio
import logging
import ssl

import aiosmtplib

from digest.config import SmtpConfig
from digest.errors import DeliveryError, RelayRefused
from digest.transport import SENT, Envelope, Outcome, Status, one_line, os_reason

# The name it had inside digest.mailer: log lines read the same.
log = logging.getLogger("digest.mailer")

# Longest wait for the server's reply to QUIT when closing: shutting down should not hang.
QUIT_TIMEOUT = 5.0


class SmtpTransport:
    """A pool of ``concurrency`` reused SMTP connections to one relay, optionally rate-limited.

    ``__aenter__`` opens one connection (and logs in) so that a wrong host, port,
    security mode or password fails the run at once; the others open on first use.
    A connection the relay refuses at its greeting (421: too many connections)
    leaves the pool for the rest of the run and its message goes on another;
    when none is left, ``send`` raises ``RelayRefused``.
    ``tls_context`` overrides certificate checks (tests, private CAs).
    """

    def __init__(
        self,
        settings: SmtpConfig,
        *,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.concurrency = settings.concurrency
        self._password = password
        self._tls_context = tls_context
        self._clients: list[aiosmtplib.SMTP] = []
        # None in the queue: every connection was refused, see _retire().
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP | None] | None = None
        self._refused: RelayRefused | None = None
        self._pace = _Pace(settings.rate_per_second)

    @property
    def address(self) -> str:
        host = self.settings.host
        return f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}"

    async def __aenter__(self) -> "SmtpTransport":
        self._check_password()
        self._clients = [self._client() for _ in range(self.concurrency)]
        try:
            await self._clients[0].connect()
            await _hello(self._clients[0])
        except (aiosmtplib.SMTPException, OSError) as err:
            self._clients = []
            raise self._connect_error(err) from err
        # LIFO: the connection used last (still open, warm) is handed out first.
        self._idle = asyncio.LifoQueue()
        self._refused = None
        for client in reversed(self._clients):
            self._idle.put_nowait(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        clients, self._clients, self._idle = self._clients, [], None
        await asyncio.gather(*(_quit(client) for client in clients))
        await asyncio.sleep(0)  # let the closed sockets' callbacks run before the loop ends

    async def send(self, envelope: Envelope) -> Outcome:
        """Send on an idle pooled connection (waits for one when all are busy) in the next
        rate slot; raises RelayRefused when the relay refuses every connection.

        The slot comes first and only then is the connection opened or reused: a
        connection held open through the wait would be closed by the relay's idle
        timeout (Postfix ``smtpd_timeout``) and the message would fail on it.
        """
        while True:
            client = await self._checkout()
            try:
                await self._pace.wait()
                return await self._send_on(client, envelope)
            except _TurnedAway as refusal:
                self._retire(client, refusal.reply)
            finally:
                self._checkin(client)

    async def _checkout(self) -> aiosmtplib.SMTP:
        if self._idle is None:
            raise RuntimeError("SmtpTransport.send() outside 'async with'")
        client = await self._idle.get()
        if client is None:  # every connection was refused: tell each waiting sender
            self._idle.put_nowait(None)
            assert self._refused is not None
            raise self._refused
        return client

    def _checkin(self, client: aiosmtplib.SMTP) -> None:
        if self._idle is not None and client in self._clients:
            self._idle.put_nowait(client)

    def _retire(self, client: aiosmtplib.SMTP, reply: str) -> None:
        """Drop a connection the relay refused; RelayRefused when it was the last one."""
        client.close()
        self._clients.remove(client)
        if self._clients:
            log.warning(
                "the SMTP server %s refused a connection (%s): going on with %d",
                self.address,
                reply,
                len(self._clients),
            )
            return
        self._refused = RelayRefused(
            f"the SMTP server {self.address} refused every connection: {reply}",
            "lower [smtp] concurrency, or try again later; the digests stay queued",
        )
        if self._idle is not None:
            self._idle.put_nowait(None)
        raise self._refused

    async def _send_on(self, client: aiosmtplib.SMTP, envelope: Envelope) -> Outcome:
        if not client.is_connected:
            try:
                await client.connect()
                await _hello(client)
            except (aiosmtplib.SMTPException, OSError) as err:
                refusal = _turned_away(err)
                if refusal is not None:
                    raise _TurnedAway(refusal) from err
                failure = self._connect_error(err)
                return Outcome("deferred", getattr(err, "code", None), str(failure))
        finished = False
        try:
            outcome, reusable = await self._transact(client, envelope)
            finished = True
        finally:
            if not finished:  # cancelled mid-transaction: the session state is unknown
                client.close()
        if not reusable:
            client.close()
        return outcome

    async def _transact(self, client: aiosmtplib.SMTP, envelope: Envelope) -> tuple[Outcome, bool]:
        """One MAIL/RCPT/DATA: the outcome, and whether the connection is fit for the next."""
        if not _bare_address(envelope.sender):
            raise DeliveryError(
                f"the envelope sender {envelope.sender!r} is not a bare address",
                "check [delivery] from",
            )
        if not _bare_address(envelope.recipient):
            return Outcome("failed", None, f"not a bare address: {envelope.recipient!r}"), True
        limit = _size_limit(client)
        if limit and len(envelope.data) > limit:
            size = len(envelope.data)
            return _held(f"{size} bytes, over the {limit} that {self.address} takes (SIZE)"), True
        international = not (envelope.sender.isascii() and envelope.recipient.isascii())
        try:
            refused, _ = await client.sendmail(
                envelope.sender,
                [envelope.recipient],
                envelope.data,
                mail_options=["SMTPUTF8"] if international else None,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as err:
            return self._classify(client, envelope, err)
        response = refused.get(envelope.recipient)
        if response is not None:
            return _by_code(response.code, response.message), _reusable(client, response.code)
        return SENT, True

    def _classify(
        self, client: aiosmtplib.SMTP, envelope: Envelope, err: Exception
    ) -> tuple[Outcome, bool]:
        """The table: 5xx failed, 4xx deferred, network trouble deferred on a fresh connection.

        Except what is about the relay: a size refusal holds the message (no attempt,
        no bounce); a refusal of the sender stops the run (RelayRefused for a 4xx).
        """
        refused_as_such = aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPDataError
        if isinstance(err, refused_as_such) and _too_big(err.code, err.message):
            reply = one_line(f"{err.code} {err.message}")
            return _held(reply, err.code), _reusable(client, err.code)
        if isinstance(err, aiosmtplib.SMTPSenderRefused) and _refuses_every_message(err.code):
            raise self._sender_error(envelope.sender, err) from err
        if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
            err = err.recipients[0]
        if isinstance(err, aiosmtplib.SMTPResponseException):
            return _by_code(err.code, err.message), _reusable(client, err.code)
        if isinstance(err, TimeoutError):  # aiosmtplib's SMTPTimeoutError is one
            wait = self.settings.timeout_seconds
            return _deferred(f"no reply from {self.address} within {wait:g} s"), False
        if isinstance(err, aiosmtplib.SMTPServerDisconnected):
            return _deferred(f"{self.address} closed the connection"), False
        if isinstance(err, OSError):
            return _deferred(f"network error with {self.address}: {_reason(err)}"), False
        if isinstance(err, aiosmtplib.SMTPNotSupported | ValueError):
            # An address that cannot go on the wire, or SMTPUTF8 the relay lacks: no retry helps.
            return Outcome("failed", None, one_line(str(err))), False
        return _deferred(one_line(str(err))), False

    def _client(self) -> aiosmtplib.SMTP:
        settings = self.settings
        try:
            return aiosmtplib.SMTP(
                hostname=settings.host,
                port=settings.port,
                username=settings.username or None,
                password=self._password,
                local_hostname=settings.local_hostname,
                timeout=settings.timeout_seconds,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                tls_context=self._tls_context,
            )
        except ValueError as err:
            raise DeliveryError(f"bad [smtp] settings: {err}") from err

    def _check_password(self) -> None:
        if self.settings.username and self._password is None:
            raise DeliveryError(
                f"[smtp] username is {self.settings.username!r} but "
                f"${self.settings.password_env} is not set",
                f"export {self.settings.password_env}=... or leave [smtp] username empty",
            )

    def _sender_error(self, sender: str, err: aiosmtplib.SMTPSenderRefused) -> DeliveryError:
        reply = one_line(f"{err.code} {err.message}")
        if err.code < 500:
            return RelayRefused(
                f"the SMTP server {self.address} takes no mail for now: {reply}",
                "the relay is busy, out of storage or over its rate: try again later; "
                "nothing counted as a bounce and the digests stay queued",
            )
        return DeliveryError(
            f"the SMTP server {self.address} refuses mail from {sender}: {reply}",
            "check [delivery] from and the [smtp] login",
        )

    def _connect_error(self, err: BaseException) -> DeliveryError:
        """One line naming the server, what went wrong and which setting to check."""
        message, hint = _describe_connect(err, self.settings, f"the SMTP server {self.address}")
        return DeliveryError(message, hint)


def _describe_connect(err: BaseException, settings: SmtpConfig, server: str) -> tuple[str, str]:
    text = one_line(str(err))
    if isinstance(err, aiosmtplib.SMTPAuthenticationError):
        reply = one_line(f"{err.code} {err.message}")
        return (
            f"{server} refused the login for {settings.username!r}: {reply}",
            f"check [smtp] username and ${settings.password_env}",
        )
    if isinstance(err, TimeoutError):
        return (
            f"no answer from {server} within {settings.timeout_seconds:g} s",
            "check [smtp] host, port and security, or raise [smtp] timeout_seconds",
        )
    tls = _tls_cause(err)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (
            f"TLS with {server} failed: {_reason(tls)}",
            "check that [smtp] host is the name in its certificate, or trust its CA: SSL_CERT_FILE",
        )
    if tls is not None:
        return (
            f"TLS with {server} failed: {_reason(tls)}",
            'check [smtp] security: "tls" is usually port 465, "starttls" port 587',
        )
    if isinstance(err, aiosmtplib.SMTPResponseException):
        return (
            f"{server} refused the session: {err.code} {one_line(err.message)}",
            "check [smtp] host, port and local_hostname, or try again later",
        )
    if isinstance(err, aiosmtplib.SMTPConnectError):
        return f"cannot reach {server}: {_reason(err)}", "check [smtp] host and port"
    if "starttls" in text.lower():
        return (
            f"{server} does not offer STARTTLS",
            'set [smtp] security = "tls" for an implicit-TLS port or "none" for a local relay',
        )
    if "auth extension" in text.lower() or "authentication method" in text.lower():
        return (
            f"{server} does not offer a login on this connection",
            'set [smtp] security = "starttls" or "tls", or leave [smtp] username empty',
        )
    if isinstance(err, aiosmtplib.SMTPServerDisconnected):
        return (
            f"{server} closed the connection while connecting",
            'check [smtp] security: an implicit-TLS port (465) needs "tls"',
        )
    return f"cannot use {server}: {text}", "check the [smtp] settings"


def _bare_address(address: str) -> bool:
    """Fit for MAIL FROM / RCPT TO as is (aiosmtplib quietly cuts ``a@b\\r\\nx`` to ``a@b``)."""
    return "@" in address and not any(
        c.isspace() or not c.isprintable() or c in '<>"' for c in address
    )


def _deferred(error: str) -> Outcome:
    return Outcome("deferred", None, error)


def _held(reason: str, code: int | None = None) -> Outcome:
    """Deferred for the relay's size limit: no retry in this run, no attempt, no bounce."""
    return Outcome("deferred", code, f"too big for the relay: {reason}", relay=True)


def _by_code(code: int, message: str) -> Outcome:
    """5xx is permanent for this recipient; 4xx, and any code outside 4xx-5xx, is worth retrying."""
    status: Status = "failed" if 500 <= code <= 599 else "deferred"
    return Outcome(status, code, one_line(f"{code} {message}"))


def _refuses_every_message(code: int) -> bool:
    """A 5xx to MAIL FROM is about us (login, sender address), not the subscriber; so is a
    4xx other than 421 (Postfix: 452 out of storage, 450 4.7.1 too much mail).

    Failing or deferring each message would mark innocent subscribers as bouncing or
    burn their attempts, so it stops the run instead.  421 closes this connection
    only: the message is retried on a new one.  552 is too large (see _too_big).
    """
    return 400 <= code <= 599 and code not in (421, 552)


def _too_big(code: int, message: str) -> bool:
    """552 at MAIL FROM or DATA is the relay's size limit (RFC 1870; Postfix 552 5.3.4).

    Only a 5.2.x enhanced code (mailbox full) makes it the recipient's.
    """
    return code == 552 and not message.lstrip().startswith("5.2.")


def _size_limit(client: aiosmtplib.SMTP) -> int:
    """The largest message the server takes, from its EHLO SIZE (RFC 1870); 0 if it says none."""
    if not client.supports_extension("size"):
        return 0
    value = client.esmtp_extensions.get("size", "").strip()
    return int(value) if value.isdigit() else 0


async def _hello(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO for an old server) now, so its SIZE is known before the message is offered."""
    if not client.is_ehlo_or_helo_needed:
        return
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def _turned_away(err: BaseException) -> str | None:
    """The reply, when it refuses the connection itself: a greeting other than 220, or a 421
    to EHLO; None for other trouble (unreachable, TLS, login)."""
    if not isinstance(err, aiosmtplib.SMTPResponseException):
        return None
    if isinstance(err, aiosmtplib.SMTPConnectResponseError) or err.code == 421:
        return one_line(f"{err.code} {err.message}")
    return None


class _TurnedAway(Exception):
    """The relay refused a pooled connection; the message is not at fault."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _reusable(client: aiosmtplib.SMTP, code: int) -> bool:
    """421 means the server is closing the channel; a garbled reply means we lost sync."""
    return client.is_connected and code != 421 and 400 <= code <= 599


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Polite QUIT, then a hard close: a server that has gone already is no error at shutdown.

    The hard close skips TLS's close_notify exchange, which would otherwise still be
    in flight when the event loop ends (an unclosed socket).
    """
    transport = client.transport
    try:
        if client.is_connected:
            await client.quit(timeout=QUIT_TIMEOUT)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        client.close()
        if isinstance(transport, asyncio.Transport):
            transport.abort()


class _Pace:
    """Spaces message starts ``1 / rate`` seconds apart across all connections (0 = no limit).

    Even spacing, no bursts: a relay's per-second limit is never overrun, whatever
    the pool size.  Uses the event loop's clock.
    """

    def __init__(self, rate_per_second: float) -> None:
        self._interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next)
        self._next = start + self._interval  # claimed before awaiting: no other task can take it
        if start > now:
            await asyncio.sleep(start - now)


def _tls_cause(err: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(err: BaseException) -> str:
    """The OS's words for an I/O error, looking through aiosmtplib's wrapping."""
    cause = err.__cause__ if isinstance(err, aiosmtplib.SMTPException) and err.__cause__ else err
    return os_reason(cause)
