"""Signing up from the web: double opt-in without telling anyone who is subscribed.

Every request for an address ends in exactly one email to that address and the
same page, whatever the address's state, so the page cannot be used to find out
who subscribes (no enumeration):

* unknown: stored as ``pending``; pending, unsubscribed or bouncing: nothing
  changes.  Each gets a confirmation link (signed, expiring) that carries the
  filter asked for, applied only when the link is confirmed (``lifecycle``);
* active or paused: nothing changes, and they get a note with their manage
  link ("you are already subscribed").

The messages are tiny; the renderer builds them like every other mail
(``Renderer.confirmation``), and they go through the configured transport, in
the request, on its own event loop.  The email shows the filter its link
confirms, which is the one asked for, not the one stored.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr

from digest import addresses, links
from digest.config import Config
from digest.lifecycle import Kind
from digest.mailer import DeliveryError, Envelope, Outcome, Transport
from digest.models import Subscriber
from digest.render import Renderer, confirmation_id
from digest.web.security import ConfirmTokens

log = logging.getLogger(__name__)


def message(
    renderer: Renderer, person: Subscriber, kind: Kind, link: str, query: str, now: datetime
) -> Envelope:
    """The confirmation (or already-subscribed) email for ``link``, as an envelope."""
    sender = renderer.config.delivery.from_
    message_id = confirmation_id(sender)
    return Envelope(
        sender=parseaddr(sender)[1],
        recipient=addresses.wire(person.email),
        data=renderer.confirmation(kind, person.email, query, link, now, message_id),
        message_id=message_id,
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
