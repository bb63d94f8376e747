"""The transports against real things: a Maildir in tmp_path and aiosmtpd servers on loopback."""

import asyncio
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from digest import mailer
from digest.config import DeliveryConfig, SmtpConfig
from digest.maildir_view import latest_html
from digest.mailer import (
    GROUP,
    DeliveryError,
    Envelope,
    MaildirTransport,
    Outcome,
    RelayRefused,
    SmtpTransport,
    Status,
    Transport,
    transport_for,
)
from tests.smtp_servers import (
    AuthRequired,
    BusyGreeting,
    DropMidData,
    Refuse421,
    RefuseMail,
    Reject550,
    Server,
    Sink,
    SizeLimit,
    Stall,
    Tls,
    down_port,
    make_tls,
    serve,
    silent_port,
    sink_process,
)

SENDER = "digest@example.org"
SENT = Outcome("sent")


def message(n: int, to: str = "reader@example.org", *, html: str | None = None) -> Envelope:
    """A small multipart digest with a unique Message-ID, CRLF line ends."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"Paper Digest <{SENDER}>"
    msg["To"] = to
    msg["Subject"] = f"Digest {n}"
    msg["Message-ID"] = f"<digest-{n}@example.org>"
    msg.set_content(f"Paper {n}\n")
    msg.add_alternative(html or f"<p>Paper {n}</p>\n", subtype="html")
    return Envelope(SENDER, to, msg.as_bytes(), msg["Message-ID"])


def smtp(port: int, **settings: Any) -> SmtpConfig:
    return SmtpConfig(
        **{"port": port, "local_hostname": "client.test", "timeout_seconds": 5.0, **settings}
    )


async def deliver(transport: Transport, envelopes: Iterable[Envelope]) -> list[Outcome]:
    """Open, send one after the other (order matters to the misbehaving servers), close."""
    async with transport:
        return [await transport.send(envelope) for envelope in envelopes]


def send(transport: Transport, envelopes: Iterable[Envelope]) -> list[Outcome]:
    return asyncio.run(deliver(transport, envelopes))


def refused(transport: Transport) -> str:
    """The DeliveryError opening the transport raises, as the one line the CLI prints."""
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(deliver(transport, [message(1)]))
    text = str(caught.value)
    assert "\n" not in text
    return text


# -- Maildir -------------------------------------------------------------------------------


def test_maildir_files_each_message_into_new(tmp_path: Path) -> None:
    envelopes = [message(1), message(2)]
    assert send(MaildirTransport(tmp_path / "mail"), envelopes) == [SENT, SENT]
    files = sorted((tmp_path / "mail" / "new").iterdir())
    assert len(files) == 2
    assert list((tmp_path / "mail" / "tmp").iterdir()) == []
    raw = [path.read_bytes() for path in files]
    assert all(b"\r" not in data for data in raw)  # Maildir files use local line ends
    assert sorted(raw) == sorted(e.data.replace(b"\r\n", b"\n") for e in envelopes)
    parsed = {BytesParser(policy=policy.default).parsebytes(data)["Message-ID"] for data in raw}
    assert parsed == {envelope.message_id for envelope in envelopes}


def test_a_host_name_with_a_slash_or_colon_is_escaped_in_the_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host name ends each file's name: a "/" would point the file at another folder,
    a ":" starts a Maildir flag.  Escaped as ``mailbox`` escapes them."""
    monkeypatch.setattr(mailer.socket, "gethostname", lambda: "../evil/host:2,S")
    assert send(MaildirTransport(tmp_path / "mail"), [message(1)]) == [SENT]
    (filed,) = (tmp_path / "mail" / "new").iterdir()
    assert filed.name.endswith(r"...\057evil\057host\0722,S")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mail"]


def test_maildir_that_cannot_be_created_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    text = refused(MaildirTransport(tmp_path / "file" / "mail"))
    assert text.startswith(f"cannot open the Maildir {tmp_path / 'file' / 'mail'}: not a directory")


def test_maildir_write_failure_is_one_clear_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with MaildirTransport(tmp_path / "mail") as transport:
            (tmp_path / "mail" / "tmp").rmdir()
            (tmp_path / "mail" / "tmp").write_text("in the way")
            await transport.send(message(1))

    with pytest.raises(DeliveryError, match="cannot write to the Maildir"):
        asyncio.run(scenario())


def test_latest_html_writes_the_newest_html_part(tmp_path: Path) -> None:
    maildir, target = tmp_path / "mail", tmp_path / "out" / "latest.html"
    assert latest_html(maildir, target) is None  # no Maildir yet
    send(MaildirTransport(maildir), [])
    assert latest_html(maildir, target) is None  # empty
    send(MaildirTransport(maildir), [message(n, html=f"<h1>Digest {n}</h1>\n") for n in range(12)])
    assert latest_html(maildir, target) == target
    assert target.read_text(encoding="utf-8") == "<h1>Digest 11</h1>\n"


# -- Choosing a transport ------------------------------------------------------------------


def test_transport_for_defaults_to_the_maildir(tmp_path: Path) -> None:
    transport = transport_for(DeliveryConfig(maildir=tmp_path / "mail"), SmtpConfig())
    assert isinstance(transport, MaildirTransport)
    assert transport.concurrency == GROUP  # sends in flight: one group filed at once


def test_messages_filed_at_once_each_get_a_file_of_their_own_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    """The Maildir writes several messages at once (threads): no name is ever used twice."""
    transport = MaildirTransport(tmp_path / "mail")
    envelopes = [message(n, f"reader{n}@example.org") for n in range(60)]

    async def file_all() -> list[Outcome]:
        async with transport:
            return await asyncio.gather(*(transport.send(e) for e in envelopes))

    assert {o.status for o in asyncio.run(file_all())} == {"sent"}
    files = list((tmp_path / "mail" / "new").iterdir())
    assert len(files) == len(envelopes)
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}
    parser = BytesParser(policy=policy.default)
    filed = {str(parser.parsebytes(f.read_bytes())["To"]) for f in files}
    assert filed == {f"reader{n}@example.org" for n in range(60)}


def test_messages_waiting_together_are_filed_as_one_group_each_on_disk_when_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread hand-off and one disk sync for the group; no send returns before its
    message is in ``new/``, and nothing is left in ``tmp/``."""
    groups: list[int] = []
    file_group = mailer._file_group

    def counted(maildir: Path, messages: list[bytes]) -> None:
        groups.append(len(messages))
        file_group(maildir, messages)

    monkeypatch.setattr(mailer, "_file_group", counted)
    transport = MaildirTransport(tmp_path / "mail")
    new = tmp_path / "mail" / "new"

    async def send_one(envelope: Envelope) -> int:
        await transport.send(envelope)
        return len(list(new.iterdir()))

    async def file_all() -> list[int]:
        async with transport:
            return await asyncio.gather(*(send_one(message(n)) for n in range(40)))

    assert asyncio.run(file_all()) == [40] * 40
    assert groups == [40]
    assert list((tmp_path / "mail" / "tmp").iterdir()) == []


def test_a_group_that_fails_for_a_reason_not_the_disks_fails_each_send_never_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(maildir: Path, messages: list[bytes]) -> None:
        raise ValueError("not the disk")

    monkeypatch.setattr(mailer, "_file_group", broken)

    async def file_all() -> list[BaseException | Outcome]:
        async with MaildirTransport(tmp_path / "mail") as transport:
            sends = (transport.send(message(n)) for n in range(3))
            return await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)

    assert [str(e) for e in asyncio.run(file_all())] == ["not the disk"] * 3


def test_transport_for_smtp_logs_in_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    with serve(AuthRequired("digest", "s3cret")) as server:
        settings = smtp(server.port, username="digest", password_env="TEST_SMTP_PASSWORD")
        transport = transport_for(DeliveryConfig(backend="smtp"), settings)
        assert send(transport, [message(1)]) == [SENT]
        assert server.handler.wait_for(1)[0].message_id == "<digest-1@example.org>"


# -- SMTP: the pool ------------------------------------------------------------------------


def test_concurrent_sends_share_a_pool_of_reused_connections() -> None:
    envelopes = [message(n, to=f"reader{n}@example.org") for n in range(20)]

    async def together(transport: SmtpTransport) -> list[Outcome]:
        async with transport:
            return await asyncio.gather(*(transport.send(e) for e in envelopes))

    with serve(Sink()) as server:
        outcomes = asyncio.run(together(SmtpTransport(smtp(server.port, concurrency=4))))
        received = server.handler.wait_for(20)
    assert outcomes == [SENT] * 20
    assert {(r.mail_from, r.rcpt_tos, r.data) for r in received} == {
        (SENDER, (e.recipient,), e.data) for e in envelopes
    }
    assert 1 <= server.handler.sessions <= 4


def test_rate_limit_spaces_messages_across_connections() -> None:
    with serve(Sink()) as server:
        transport = SmtpTransport(smtp(server.port, concurrency=4, rate_per_second=20))

        async def timed() -> float:
            async with transport:
                start = time.monotonic()
                await asyncio.gather(*(transport.send(message(n)) for n in range(10)))
                return time.monotonic() - start

        assert asyncio.run(timed()) >= 0.45  # 9 gaps of 1/20 s
        server.handler.wait_for(10)


def test_an_international_address_goes_with_smtputf8() -> None:
    with serve(Sink()) as server:
        assert send(SmtpTransport(smtp(server.port)), [message(1, to="jürgen@example.org")]) == [
            SENT
        ]
        assert server.handler.wait_for(1)[0].rcpt_tos == ("jürgen@example.org",)


@pytest.mark.parametrize(
    "bad", ["a@b\r\nRSET", "two words@example.org", "<a@example.org>", "nobody"]
)
def test_an_address_that_cannot_go_on_the_wire_fails_that_message_only(bad: str) -> None:
    with serve(Sink()) as server:
        transport = SmtpTransport(smtp(server.port, concurrency=1))
        outcomes = send(transport, [replace(message(1), recipient=bad), message(2)])
        assert [r.rcpt_tos for r in server.handler.wait_for(1)] == [("reader@example.org",)]
    assert outcomes == [Outcome("failed", None, f"not a bare address: {bad!r}"), SENT]


def test_a_sender_that_is_not_a_bare_address_stops_the_run() -> None:
    with serve(Sink()) as server:
        envelope = replace(message(1), sender="Paper Digest <digest@example.org>")
        with pytest.raises(
            DeliveryError, match=r"is not a bare address \(check \[delivery\] from\)"
        ):
            send(SmtpTransport(smtp(server.port)), [envelope])
        assert server.handler.count == 0


# -- SMTP: per-message outcomes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("550 5.1.1 mailbox unavailable", "failed"),
        ("554 5.7.1 rejected by policy", "failed"),
        ("450 4.2.1 mailbox busy, try later", "deferred"),
        ("452 4.2.2 mailbox full", "deferred"),
    ],
)
def test_a_refused_recipient_is_classified_and_the_others_still_go(
    reply: str, status: Status
) -> None:
    envelopes = [
        message(1, "a@example.org"),
        message(2, "gone@example.org"),
        message(3, "c@example.org"),
    ]
    with serve(Reject550("gone@example.org", reply)) as server:
        outcomes = send(SmtpTransport(smtp(server.port, concurrency=1)), envelopes)
        received = server.handler.wait_for(2)
    assert outcomes == [SENT, Outcome(status, int(reply[:3]), reply), SENT]
    assert [r.rcpt_tos for r in received] == [("a@example.org",), ("c@example.org",)]
    assert server.handler.sessions == 1  # the connection survives a refused recipient


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
def test_421_defers_and_the_next_message_goes_on_a_new_connection(command: str) -> None:
    with serve(Refuse421(command, times=1)) as server:
        outcomes = send(SmtpTransport(smtp(server.port, concurrency=1)), [message(1), message(2)])
        assert server.handler.wait_for(1)[0].message_id == "<digest-2@example.org>"
    reply = "421 4.3.2 Service not available, closing transmission channel"
    assert outcomes == [Outcome("deferred", 421, reply), SENT]
    assert server.handler.sessions == 2


def test_a_connection_dropped_mid_data_defers_and_the_transport_recovers() -> None:
    with serve(DropMidData(times=1)) as server:
        outcomes = send(SmtpTransport(smtp(server.port, concurrency=1)), [message(1), message(2)])
        assert server.handler.wait_for(1)[0].message_id == "<digest-2@example.org>"
    assert outcomes[0] == Outcome(
        "deferred", None, f"127.0.0.1:{server.port} closed the connection"
    )
    assert outcomes[1] == SENT
    assert server.handler.sessions == 2


def test_a_server_that_stops_answering_times_out_and_defers() -> None:
    with serve(Stall(times=1)) as server:
        transport = SmtpTransport(smtp(server.port, concurrency=1, timeout_seconds=0.3))
        outcomes = send(transport, [message(1), message(2)])
        server.handler.wait_for(1)
    assert outcomes == [
        Outcome("deferred", None, f"no reply from 127.0.0.1:{server.port} within 0.3 s"),
        SENT,
    ]


def test_a_server_that_goes_away_mid_run_defers_instead_of_raising() -> None:
    async def scenario(stack: ExitStack, port: int) -> list[Outcome]:
        async with SmtpTransport(smtp(port, concurrency=1)) as transport:
            outcomes = [await transport.send(message(1))]
            stack.close()  # stop the server
            outcomes += [await transport.send(message(2)), await transport.send(message(3))]
            return outcomes

    with ExitStack() as stack:
        server = stack.enter_context(serve(Sink()))
        first, second, third = asyncio.run(scenario(stack, server.port))
    assert first == SENT
    assert second.status == third.status == "deferred"
    assert third.error == (
        f"cannot reach the SMTP server 127.0.0.1:{server.port}: connection refused"
        " (check [smtp] host and port)"
    )


# -- SMTP: what real relays do (FIELD_NOTES: Postfix 3.7) ---------------------------------


def test_a_paced_sender_waits_for_its_slot_before_it_reuses_or_opens_a_connection() -> None:
    # Slots 0.5 s apart, the relay closes a connection idle 0.2 s: each message needs a fresh one.
    with serve(Sink(idle_timeout=0.2)) as server:
        transport = SmtpTransport(smtp(server.port, concurrency=1, rate_per_second=2))
        assert send(transport, [message(n) for n in range(3)]) == [SENT] * 3
        assert len(server.handler.wait_for(3)) == 3
    assert server.handler.idle_closed >= 2  # the relay did close them while we waited
    assert server.handler.sessions == 3


def test_a_connection_refused_at_the_greeting_leaves_the_pool_and_its_message_goes_on_another() -> (
    None
):
    envelopes = [message(n, to=f"reader{n}@example.org") for n in range(8)]

    async def together(transport: SmtpTransport) -> list[Outcome]:
        async with transport:
            return await asyncio.gather(*(transport.send(e) for e in envelopes))

    with serve(BusyGreeting(limit=1)) as server:
        outcomes = asyncio.run(together(SmtpTransport(smtp(server.port, concurrency=4))))
        server.handler.wait_for(8)
    assert outcomes == [SENT] * 8
    assert server.handler.refused == 3  # the other three slots, once each


def test_when_the_relay_refuses_every_connection_sending_stops_with_one_clear_error() -> None:
    async def scenario(handler: BusyGreeting, port: int) -> Outcome:
        transport = SmtpTransport(smtp(port, concurrency=1, rate_per_second=2))
        async with transport:
            first = await transport.send(message(1))
            handler.limit = 0  # from now on: too many connections
            with pytest.raises(RelayRefused) as caught:
                await transport.send(message(2))  # its connection idled out meanwhile
            with pytest.raises(RelayRefused):  # and so does any later message
                await transport.send(message(3))
        assert str(caught.value) == (
            f"the SMTP server 127.0.0.1:{port} refused every connection: {BusyGreeting.REPLY}"
            " (lower [smtp] concurrency, or try again later; the digests stay queued)"
        )
        return first

    handler = BusyGreeting(limit=1, idle_timeout=0.2)
    with serve(handler) as server:
        assert asyncio.run(scenario(handler, server.port)) == SENT
        assert [r.message_id for r in handler.wait_for(1)] == ["<digest-1@example.org>"]
    assert handler.count == 1


@pytest.mark.parametrize(
    "reply",
    ["452 4.3.1 Insufficient system storage", "450 4.7.1 Error: too much mail from 127.0.0.1"],
)
def test_a_relay_that_takes_no_mail_for_now_stops_sending(reply: str) -> None:
    with serve(RefuseMail(reply)) as server:
        with pytest.raises(RelayRefused) as caught:
            send(SmtpTransport(smtp(server.port)), [message(1), message(2)])
        assert server.handler.count == 0
    assert str(caught.value).startswith(
        f"the SMTP server 127.0.0.1:{server.port} takes no mail for now: {reply} ("
    )


def test_a_message_over_the_relays_size_limit_at_mail_from_is_held_not_failed() -> None:
    reply = "552 5.3.4 Message size exceeds fixed limit"
    with serve(RefuseMail(reply, times=1)) as server:
        outcomes = send(SmtpTransport(smtp(server.port, concurrency=1)), [message(1), message(2)])
        assert [r.message_id for r in server.handler.wait_for(1)] == ["<digest-2@example.org>"]
    assert outcomes == [
        Outcome("deferred", 552, f"too big for the relay: {reply}", relay=True),
        SENT,
    ]
    assert server.handler.sessions == 1  # the connection stays usable


def test_a_message_over_the_advertised_size_is_never_offered_and_mail_from_declares_size() -> None:
    small, big = message(1), message(2, html="<p>" + "x" * 3000 + "</p>")
    limit = len(small.data) + 100
    assert len(big.data) > limit
    with serve(SizeLimit(limit)) as server:
        outcomes = send(SmtpTransport(smtp(server.port, concurrency=1)), [big, small])
        received = server.handler.wait_for(1)
    assert outcomes[0] == Outcome(
        "deferred",
        None,
        f"too big for the relay: {len(big.data)} bytes, over the {limit} that "
        f"127.0.0.1:{server.port} takes (SIZE)",
        relay=True,
    )
    assert outcomes[1] == SENT
    assert server.handler.mails == 1  # the big one was never offered
    assert received[0].mail_options == (f"SIZE={len(small.data)}",)


# -- SMTP: the transport as a whole --------------------------------------------------------


def test_an_unreachable_server_is_one_clear_error() -> None:
    port = down_port()
    assert refused(SmtpTransport(smtp(port))) == (
        f"cannot reach the SMTP server 127.0.0.1:{port}: connection refused (check [smtp] host and port)"
    )


def test_a_server_that_never_greets_times_out() -> None:
    with silent_port() as port:
        text = refused(SmtpTransport(smtp(port, timeout_seconds=0.3)))
    assert text.startswith(f"no answer from the SMTP server 127.0.0.1:{port} within 0.3 s")


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        (
            "digest",
            "wrong",
            "refused the login for 'digest': 535 5.7.8 Authentication credentials invalid",
        ),
        ("digest", None, "[smtp] username is 'digest' but $DIGEST_SMTP_PASSWORD is not set"),
        ("", None, "refuses mail from digest@example.org: 530 5.7.0 Authentication required"),
    ],
)
def test_a_refused_login_is_one_clear_error(
    username: str, password: str | None, expected: str
) -> None:
    with serve(AuthRequired("digest", "s3cret")) as server:
        text = refused(SmtpTransport(smtp(server.port, username=username), password=password))
        assert expected in text
        assert server.handler.count == 0


def test_starttls_against_a_server_without_it_is_one_clear_error() -> None:
    with serve(Sink()) as server:
        text = refused(SmtpTransport(smtp(server.port, security="starttls")))
    assert text.startswith(f"the SMTP server 127.0.0.1:{server.port} does not offer STARTTLS")


def test_implicit_tls_against_a_plain_server_is_one_clear_error() -> None:
    with serve(Sink()) as server:
        text = refused(SmtpTransport(smtp(server.port, security="tls")))
    assert text.startswith(f"TLS with the SMTP server 127.0.0.1:{server.port} failed: ")


# -- SMTP over TLS (a self-signed certificate made with the openssl command) ---------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    made = make_tls(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return made


def tls_server(tls: Tls, security: str) -> AbstractContextManager[Server]:
    """Implicit TLS from the first byte, or plain text offering STARTTLS."""
    if security == "tls":
        return serve(Sink(), ssl_context=tls.server_context())
    return serve(Sink(), starttls_context=tls.server_context())


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_delivers(tls: Tls, security: str) -> None:
    with tls_server(tls, security) as server:
        transport = SmtpTransport(
            smtp(server.port, security=security), tls_context=tls.client_context()
        )
        assert send(transport, [message(1)]) == [SENT]
        server.handler.wait_for(1)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_an_untrusted_certificate_is_one_clear_error(tls: Tls, security: str) -> None:
    with tls_server(tls, security) as server:
        text = refused(SmtpTransport(smtp(server.port, security=security)))
    assert text.startswith(f"TLS with the SMTP server 127.0.0.1:{server.port} failed: self-signed")
    assert "SSL_CERT_FILE" in text


# -- A sink in another process -------------------------------------------------------------


def test_the_sink_process_records_message_ids(tmp_path: Path) -> None:
    envelopes = [message(n) for n in range(5)]
    with sink_process(tmp_path / "ids.txt") as sink:
        assert send(SmtpTransport(smtp(sink.port)), envelopes) == [SENT] * 5
        assert sorted(sink.wait_for(5)) == sorted(e.message_id for e in envelopes)


@pytest.fixture(autouse=True)
def _no_smtp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
