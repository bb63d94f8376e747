"""Real aiosmtpd SMTP servers on 127.0.0.1 for tests and benchmarks: no mocked client.

In-process: ``with serve(Sink()) as server:`` runs an aiosmtpd ``Controller`` in its
own thread and event loop on a loopback port that is bound before the server
starts (so it can never be taken in between), usable from sync tests and
fixtures.  Handlers choose the behaviour:

    Sink()                      accepts and records everything; ``wait_for(n)`` blocks
                                on a condition, not a sleep; counts EHLOs (= sessions);
                                ``idle_timeout=s`` closes a connection idle that long with
                                421 4.4.2, as Postfix's smtpd_timeout does (``idle_closed``)
    BusyGreeting(limit=1)       421 at the greeting while ``limit`` sessions are open (too
                                many connections); ``times=n``: the first n connections
    RefuseMail("452 4.3.1 ...") that reply to MAIL FROM (``times`` = how often)
    RejectAll("550 5.7.1 ...")  that reply to every RCPT
    SizeLimit(2000)             advertises SIZE 2000 (enforced at MAIL FROM and DATA);
                                counts MAIL commands (``mails``)
    Refuse421(on="MAIL")        421 to MAIL, RCPT or DATA, then closes (``times`` = how often)
    Reject550("x@example.org")  550 5.1.1 (or ``reply``) for that recipient, accepts the others
    DropMidData()               answers 354 to DATA, then drops the connection
    Stall()                     reads the message, never answers (client timeouts)
    AuthRequired(user, pw)      AUTH PLAIN/LOGIN without TLS (loopback), 530 before it

``down_port()`` is a port with nothing listening; ``silent_port()`` accepts TCP and
never speaks.  ``make_tls(dir)`` makes a self-signed certificate with the openssl
command (None without it) for TLS servers (``serve(..., ssl_context=...)`` for
implicit TLS, ``starttls_context=...`` to offer STARTTLS).

Another process: ``python -m tests.smtp_servers --sink --port 0 --ids-file F`` prints
``READY 127.0.0.1 <port>`` once it accepts connections and appends each message's
Message-ID to F, flushed per message, and keeps its number of open connections in
F.open; ``with sink_process(F) as sink:`` starts it, waits for READY and stops it
(``sink.port``, ``sink.count()``, ``sink.wait_for(n)``, ``sink.wait_until_idle()``).
"""

import argparse
import asyncio
import logging
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from aiosmtpd.smtp import Envelope as ServerEnvelope
from aiosmtpd.smtp import Session as ServerSession

HOST = "127.0.0.1"
SERVER_NAME = "smtp.test"  # aiosmtpd would otherwise call socket.getfqdn()
ROOT = Path(__file__).resolve().parent.parent
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S[^\r\n]*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Received:
    """One message as the server got it (data without the final dot, CRLF line ends)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()

    @property
    def message_id(self) -> str | None:
        return message_id(self.data)


def message_id(data: bytes) -> str | None:
    """The Message-ID header of raw message bytes, looked for in the header block only."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match[1].decode("ascii", "replace").strip() if match else None


# -- Handlers ------------------------------------------------------------------------------


class Sink:
    """Accepts every message and records it; thread-safe, tests wait on a condition."""

    def __init__(self, *, keep_data: bool = True, idle_timeout: float | None = None) -> None:
        self.keep_data = keep_data
        self.idle_timeout = idle_timeout
        self.probing = False  # the Controller's own connection at start: greeted, not counted
        self._changed = threading.Condition()
        self._received: list[Received] = []
        self._count = 0
        self._sessions = 0
        self._idle_closed = 0

    def smtp_kwargs(self) -> dict[str, Any]:
        """Extra aiosmtpd ``SMTP`` arguments this behaviour needs."""
        return {} if self.idle_timeout is None else {"timeout": self.idle_timeout}

    def greeting(self, server: SMTP) -> str | None:
        """Called as a connection opens; a reply refuses it (then closed), None greets with 220."""
        return None

    def closed(self, server: SMTP) -> None:
        """Called when a connection has gone, whoever closed it."""

    def timed_out(self) -> None:
        with self._changed:
            self._idle_closed += 1

    async def intercept(self, server: SMTP, command: str) -> bool:
        """Called before MAIL, RCPT and DATA; True when it has answered the command itself."""
        return False

    async def handle_EHLO(
        self,
        server: SMTP,
        session: ServerSession,
        envelope: ServerEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        with self._changed:
            self._sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(
        self, server: SMTP, session: ServerSession, envelope: ServerEnvelope
    ) -> str:
        self.record(envelope)
        return "250 2.0.0 OK"

    def record(self, envelope: ServerEnvelope) -> None:
        data = envelope.original_content or b""
        options = tuple(envelope.mail_options)
        item = Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), data, options)
        with self._changed:
            self._count += 1
            if self.keep_data:
                self._received.append(item)
            self.on_message(item)
            self._changed.notify_all()

    def on_message(self, item: Received) -> None:
        """Hook for subclasses, called under the lock."""

    @property
    def sessions(self) -> int:
        """EHLO commands seen: one per connection (two with STARTTLS)."""
        with self._changed:
            return self._sessions

    @property
    def idle_closed(self) -> int:
        """Connections closed for idling longer than ``idle_timeout``."""
        with self._changed:
            return self._idle_closed

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    @property
    def received(self) -> list[Received]:
        with self._changed:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` messages arrived; AssertionError after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._count >= count, timeout):
                raise AssertionError(f"expected {count} messages, the sink has {self._count}")
            return list(self._received)


class _Limited(Sink):
    """A misbehaviour that happens ``times`` times (None: always), then a normal sink."""

    def __init__(self, *, times: int | None = None) -> None:
        super().__init__()
        self._left = times

    def _take(self) -> bool:
        with self._changed:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True


class Refuse421(_Limited):
    """Answers 421 to one command, then closes the connection, as a busy server does."""

    def __init__(self, on: str = "MAIL", *, times: int | None = None) -> None:
        super().__init__(times=times)
        if on not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"on must be MAIL, RCPT or DATA, not {on!r}")
        self.on = on

    async def intercept(self, server: SMTP, command: str) -> bool:
        if command != self.on or not self._take():
            return False
        await server.push("421 4.3.2 Service not available, closing transmission channel")
        _close(server)
        return True


class Reject550(Sink):
    """550 (or ``reply``) for one recipient; the others are accepted and recorded."""

    def __init__(self, recipient: str, reply: str = "550 5.1.1 mailbox unavailable") -> None:
        super().__init__()
        self.recipient = recipient.lower()
        self.reply = reply

    async def handle_RCPT(
        self,
        server: SMTP,
        session: ServerSession,
        envelope: ServerEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() == self.recipient:
            return self.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"


class DropMidData(_Limited):
    """Invites the message with 354, then closes the connection while it streams in."""

    def __init__(self, *, times: int | None = 1) -> None:
        super().__init__(times=times)

    async def intercept(self, server: SMTP, command: str) -> bool:
        if command != "DATA" or not self._take():
            return False
        await server.push("354 End data with <CR><LF>.<CR><LF>")
        _close(server)
        return True


class Stall(_Limited):
    """Reads the whole message and never answers: the client's command timeout must fire."""

    def __init__(self, *, times: int | None = 1) -> None:
        super().__init__(times=times)

    async def handle_DATA(
        self, server: SMTP, session: ServerSession, envelope: ServerEnvelope
    ) -> str:
        if self._take():
            await asyncio.sleep(3600)  # cancelled when the client hangs up or the server stops
        return await super().handle_DATA(server, session, envelope)


class AuthRequired(Sink):
    """AUTH PLAIN/LOGIN over plain TCP (fine on loopback); MAIL before login gets 530."""

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self.credentials = (user.encode(), password.encode())

    def smtp_kwargs(self) -> dict[str, Any]:
        # auth_required=True would warn about plain-text AUTH: enforce it in intercept().
        return {"authenticator": self._authenticate, "auth_require_tls": False}

    def _authenticate(
        self,
        server: SMTP,
        session: ServerSession,
        envelope: ServerEnvelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            (auth_data.login, auth_data.password) == self.credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def intercept(self, server: SMTP, command: str) -> bool:
        session = server.session
        if command != "MAIL" or (session is not None and session.authenticated):
            return False
        await server.push("530 5.7.0 Authentication required")
        return True


class BusyGreeting(Sink):
    """421 at the greeting, then closes: Postfix's per-client connection limit.

    Refuses a connection while ``limit`` others are open, or (``times``) the first
    ``times`` connections whatever is open; ``refused`` counts them.
    """

    REPLY = "421 4.7.0 smtp.test Error: too many connections from 127.0.0.1"

    def __init__(
        self,
        *,
        limit: int | None = None,
        times: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(idle_timeout=idle_timeout)
        self.limit = limit
        self._left = times
        self._open: set[int] = set()
        self._refused = 0

    def greeting(self, server: SMTP) -> str | None:
        with self._changed:
            busy = self.limit is not None and len(self._open) >= self.limit
            early = self._left is not None and self._left > 0
            if early:
                self._left = (self._left or 0) - 1
            if busy or early:
                self._refused += 1
                return self.REPLY
            self._open.add(id(server))
            return None

    def closed(self, server: SMTP) -> None:
        with self._changed:
            self._open.discard(id(server))

    @property
    def refused(self) -> int:
        with self._changed:
            return self._refused


class RefuseMail(_Limited):
    """Answers MAIL FROM with ``reply`` (a relay out of storage, over its rate or its size)."""

    def __init__(self, reply: str, *, times: int | None = None) -> None:
        super().__init__(times=times)
        self.reply = reply

    async def intercept(self, server: SMTP, command: str) -> bool:
        if command != "MAIL" or not self._take():
            return False
        await server.push(self.reply)
        return True


class RejectAll(Sink):
    """The same ``reply`` to every RCPT: a relay that will not relay for us."""

    def __init__(self, reply: str = "550 5.7.1 Unable to relay") -> None:
        super().__init__()
        self.reply = reply

    async def intercept(self, server: SMTP, command: str) -> bool:
        if command != "RCPT":
            return False
        await server.push(self.reply)
        return True


class SizeLimit(Sink):
    """Advertises ``SIZE limit`` in EHLO; aiosmtpd enforces it (552) at MAIL FROM and DATA."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._mails = 0

    def smtp_kwargs(self) -> dict[str, Any]:
        return {**super().smtp_kwargs(), "data_size_limit": self.limit}

    async def intercept(self, server: SMTP, command: str) -> bool:
        if command == "MAIL":
            with self._changed:
                self._mails += 1
        return False

    @property
    def mails(self) -> int:
        """MAIL FROM commands seen: messages offered, whether taken or not."""
        with self._changed:
            return self._mails


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


# -- Running them --------------------------------------------------------------------------


class _TestSMTP(SMTP):
    """aiosmtpd's server with a hook before MAIL, RCPT and DATA for the misbehaviours."""

    async def _intercepted(self, command: str) -> bool:
        handler: Sink = self.event_handler
        return await handler.intercept(self, command)

    async def _handle_client(self) -> None:
        handler: Sink = self.event_handler
        refusal = None if handler.probing else handler.greeting(self)
        if refusal is None:
            await super()._handle_client()
            return
        await self.push(refusal)
        _close(self)

    def connection_lost(self, error: Exception | None) -> None:
        handler: Sink = self.event_handler
        handler.closed(self)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        """Postfix's words when smtpd_timeout closes an idle connection."""
        handler: Sink = self.event_handler
        handler.timed_out()
        if self.transport is not None:
            self.transport.write(b"421 4.4.2 smtp.test Error: timeout exceeded\r\n")
        super()._timeout_cb()

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not await self._intercepted("MAIL"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._intercepted("RCPT"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not await self._intercepted("DATA"):
            await super().smtp_DATA(arg)


class _Controller(Controller):
    """Serves on a socket bound in advance: no window for another process to take the port."""

    def __init__(self, handler: Sink, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=HOST, port=sock.getsockname()[1], **kwargs)

    def factory(self) -> SMTP:
        return _TestSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        """aiosmtpd connects once to see the server up: not one of the test's connections."""
        self.handler.probing = True
        try:
            super()._trigger_server()
        finally:
            self.handler.probing = False

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    handler: Sink


def bind(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1 (port 0: a free one), not yet listening.

    The protocol is named so that asyncio sets TCP_NODELAY on accepted connections (it
    checks ``proto == IPPROTO_TCP``); with proto 0, Nagle and delayed ACKs add 40 ms to
    every reply written in two parts.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


@contextmanager
def serve(
    handler: Sink,
    *,
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    starttls_context: ssl.SSLContext | None = None,
) -> Iterator[Server]:
    """Run ``handler`` on 127.0.0.1 in a thread until the block ends."""
    sock = bind(port)
    kwargs = {"server_hostname": SERVER_NAME, **handler.smtp_kwargs()}
    if starttls_context is not None:
        kwargs["tls_context"] = starttls_context
    controller = _Controller(handler, sock, ssl_context=ssl_context, **kwargs)
    try:
        controller.start()
    except BaseException:
        controller.stop(no_assert=True)
        sock.close()
        if not controller.loop.is_closed():
            controller.loop.close()
        raise
    try:
        yield Server(HOST, sock.getsockname()[1], handler)
    finally:
        controller.stop()


def down_port() -> int:
    """A loopback port with nothing listening (connecting is refused)."""
    with closing(bind()) as sock:
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def silent_port() -> Iterator[int]:
    """A port that completes the TCP handshake and never sends a greeting."""
    with closing(bind()) as sock:
        sock.listen(8)
        yield sock.getsockname()[1]


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts exactly this certificate (for 127.0.0.1), with hostname checks on."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_tls(folder: Path) -> Tls | None:
    """A self-signed certificate for 127.0.0.1 made with the openssl command; None without it."""
    tls = Tls(folder / "cert.pem", folder / "key.pem")
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(tls.key), "-out", str(tls.cert),
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return tls


# -- A sink in another process -------------------------------------------------------------


class IdSink(Sink):
    """Appends each message's Message-ID to a file, flushed per message, for other processes.

    With ``delay`` it takes that long to accept each message (a slow relay), so that a
    test can kill a sender while messages are in flight.
    """

    def __init__(self, out: IO[str], delay: float = 0.0, open_file: Path | None = None) -> None:
        super().__init__(keep_data=False)
        self._out = out
        self._delay = delay
        self._open_file = open_file
        self._open: set[int] = set()

    def greeting(self, server: SMTP) -> str | None:
        self._connections(add=id(server))
        return None

    def closed(self, server: SMTP) -> None:
        self._connections(drop=id(server))

    def _connections(self, *, add: int | None = None, drop: int | None = None) -> None:
        """Keep the number of open connections in ``open_file`` (replaced whole, never torn)."""
        with self._changed:
            if add is not None:
                self._open.add(add)
            if drop is not None:
                self._open.discard(drop)
            if self._open_file is not None:
                part = self._open_file.with_name(self._open_file.name + ".part")
                part.write_text(f"{len(self._open)}\n", encoding="utf-8")
                part.replace(self._open_file)

    async def handle_DATA(
        self, server: SMTP, session: ServerSession, envelope: ServerEnvelope
    ) -> str:
        if self._delay:
            await asyncio.sleep(self._delay)
        return await super().handle_DATA(server, session, envelope)

    def on_message(self, item: Received) -> None:
        self._out.write(f"{item.message_id or '-'}\n")
        self._out.flush()


@dataclass
class RemoteSink:
    process: "subprocess.Popen[str]"
    port: int
    ids_file: Path

    def ids(self) -> list[str]:
        """Message-IDs received so far (only whole lines)."""
        try:
            text = self.ids_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return text.splitlines()[: text.count("\n")]

    def count(self) -> int:
        return len(self.ids())

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        """Poll the ids file until ``count`` messages are in; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(ids := self.ids()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, the sink has {len(ids)}")
            time.sleep(0.005)
        return ids

    def connections(self) -> int:
        """Connections the sink has greeted and not yet seen closed."""
        try:
            return int(open_file(self.ids_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0

    def wait_until_idle(self, timeout: float = 10.0) -> list[str]:
        """Poll until the sink holds no connection, then the Message-IDs: with every client
        gone, that list is final (a message still in the sink's hands keeps its connection
        open until it is recorded).  AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (open_now := self.connections()) > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"the sink still has {open_now} connections open")
            time.sleep(0.005)
        return self.ids()


def open_file(ids_file: Path) -> Path:
    """Where a sink process keeps its number of open connections, beside its ids file."""
    return ids_file.with_name(ids_file.name + ".open")


@contextmanager
def sink_process(
    ids_file: Path, *, port: int = 0, timeout: float = 10.0, delay: float = 0.0
) -> Iterator[RemoteSink]:
    """Start ``python -m tests.smtp_servers --sink`` and wait until it says READY."""
    command = [sys.executable, "-m", "tests.smtp_servers", "--sink", "--port", str(port)]
    command += ["--ids-file", str(ids_file), "--delay", str(delay)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        ready = _read_line(process, process.stdout, timeout).split()
        if ready[:1] != ["READY"]:
            raise RuntimeError(f"the sink process did not start (said {ready!r})")
        yield RemoteSink(process, int(ready[2]), ids_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _read_line(process: "subprocess.Popen[str]", stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the sink process said nothing within {timeout} s")
    return stream.readline()


def main(argv: list[str] | None = None) -> int:
    """Run a recording sink until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.smtp_servers")
    parser.add_argument("--sink", action="store_true", required=True, help="run a recording sink")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--ids-file", type=Path, required=True, help="append Message-IDs here")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to accept each message")
    args = parser.parse_args(argv)
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every session
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with (
        args.ids_file.open("a", encoding="utf-8") as out,
        serve(IdSink(out, args.delay, open_file(args.ids_file)), port=args.port) as srv,
    ):
        print(f"READY {srv.host} {srv.port}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
