"""Signing up from the web: double opt-in without telling anyone who is subscribed.

Every request for an address ends in exactly one email to that address and the
same page, whatever the address's state, so the page cannot be used to find out
who subscribes (no enumeration):

* unknown, pending or unsubscribed: the subscriber is (re)stored as ``pending``
  with the filter asked for, and gets a confirmation link (signed, expiring);
* active, paused or bouncing: nothing changes, and they get a note with their
  manage link ("you are already subscribed").

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
from typing import Literal

from digest import addresses, links, subscribers
from digest.config import Config
from digest.errors import StoreError, UsageError
from digest.mailer import DeliveryError, Envelope, Outcome, Transport
from digest.models import Subscriber
from digest.render import sender_domain
from digest.store import Store
from digest.web.security import ConfirmTokens
from digest.web.views import Views

Kind = Literal["confirm", "known"]
SUBJECTS: dict[Kind, str] = {
    "confirm": "Confirm your subscription to Paper Digest",
    "known": "You are already subscribed to Paper Digest",
}
KNOWN = ("active", "paused", "bouncing")
log = logging.getLogger(__name__)


def request_subscription(
    store: Store, wanted: subscribers.Wanted, now: datetime
) -> tuple[Subscriber, Kind]:
    """Store the request (see the module docstring) and say which email it calls for."""
    wanted = subscribers.check(wanted)
    current = store.subscriber(wanted.email)
    if current is None:
        try:
            return subscribers.add(store, wanted, now, status="pending", source="web"), "confirm"
        except (UsageError, StoreError):  # the same address, posted twice at once
            current = store.subscriber(wanted.email)
            if current is None:
                raise
    if current.status in KNOWN:
        return current, "known"
    changes = {"filter": wanted.filter, "status": "pending"}
    return subscribers.update(store, current.email, changes, now), "confirm"


def confirm(store: Store, subscriber_id: int, email: str, now: datetime) -> Subscriber | None:
    """Activate a pending subscriber; None when the token no longer names one who may be.

    Confirming twice is fine (the second click shows the same page); an address
    unsubscribed since it asked is not brought back by an old link.
    """
    person = store.subscriber_by_id(subscriber_id)
    if person is None or person.email.casefold() != email.casefold():
        return None
    if person.status == "pending":
        return subscribers.update(store, person.email, {"status": "active"}, now)
    return None if person.status == "unsubscribed" else person


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


def link_for(config: Config, person: Subscriber, kind: Kind, tokens: ConfirmTokens) -> str:
    """The link the email is for: confirm the subscription, or manage the one there is."""
    base = config.web.base_url
    if kind == "confirm":
        return f"{base}/confirm/{tokens.make(person.id, person.email)}"
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
