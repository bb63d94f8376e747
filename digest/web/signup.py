"""Signing up from the web: double opt-in without telling anyone who is subscribed.

Every request for an address ends in exactly one email to that address and the
same page, whatever the address's state, so the page cannot be used to find out
who subscribes (no enumeration):

* unknown: stored as ``pending``; pending, unsubscribed or bouncing: nothing
  changes.  Each gets a confirmation link (signed, expiring) that carries the
  filter asked for, applied only when the link is confirmed (``lifecycle``);
* active or paused: nothing changes, and they get a note with their manage
  link ("you are already subscribed").

The messages are tiny (text + HTML from ``templates/web/confirm_email.*``) and go
through the configured transport, in the request, on its own event loop.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from digest import addresses, links
from digest.config import Config
from digest.lifecycle import Kind
from digest.mailer import DeliveryError, Envelope, Outcome, Transport
from digest.models import Subscriber
from digest.render import sender_domain
from digest.web.security import ConfirmTokens
from digest.web.views import Views

SUBJECTS: dict[Kind, str] = {
    "confirm": "Confirm your subscription to Paper Digest",
    "known": "You are already subscribed to Paper Digest",
}
log = logging.getLogger(__name__)


def message(
    config: Config, views: Views, person: Subscriber, kind: Kind, link: str, now: datetime
) -> Envelope:
    """The confirmation (or already-subscribed) email as an envelope for the transport."""
    context = {
        "kind": kind,
        "link": link,
        "email": person.email,
        "filter": person.filter,
        "hours": config.web.confirm_hours,
        "home": config.web.base_url + "/",
    }
    sender = config.delivery.from_
    msg = EmailMessage(policy=SMTP)  # the addresses are ASCII: see digest.addresses
    msg["From"] = sender
    msg["To"] = addresses.mailbox(person.name, person.email)
    msg["Subject"] = SUBJECTS[kind]
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = make_msgid("confirm", domain=sender_domain(sender))
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(views.render("web/confirm_email.txt.j2", **context))
    msg.add_alternative(views.render("web/confirm_email.html.j2", **context), subtype="html")
    return Envelope(
        sender=parseaddr(sender)[1],
        recipient=addresses.wire(person.email),
        data=msg.as_bytes(),
        message_id=str(msg["Message-ID"]),
    )


def link_for(
    config: Config, person: Subscriber, kind: Kind, tokens: ConfirmTokens, query: str
) -> str:
    """The link the email is for: confirm the subscription, or manage the one there is."""
    base = config.web.base_url
    if kind == "confirm":
        return f"{base}/confirm/{tokens.make(person.id, person.email, query)}"
    return f"{base}/manage/{links.token(person, 'manage')}"


def deliver(transport_factory: Callable[[], Transport], envelope: Envelope) -> bool:
    """Send one message on a short-lived event loop; False (logged) when it did not go."""

    async def send() -> bool:
        async with transport_factory() as transport:
            outcome = await transport.send(envelope)
        if outcome.status != "sent":
            log.warning("confirmation to %s %s: %s", envelope.recipient, *_reason(outcome))
        return outcome.status == "sent"

    try:
        return asyncio.run(send())
    except DeliveryError as err:
        log.error("cannot send the confirmation to %s: %s", envelope.recipient, err)
        return False


def _reason(outcome: Outcome) -> tuple[str, str]:
    return outcome.status, outcome.error or "no reason given"
