"""Per-subscriber links: manage, unsubscribe, private feed and the papers a digest had no
room for, without accounts or passwords.

A link token is ``<subscriber id>-<HMAC of a purpose under the subscriber's
secret>``: unguessable, different per purpose (a leaked feed URL cannot
unsubscribe anyone), checked in constant time, and nothing derived is stored.
Changing a subscriber's secret revokes every link at once.
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from digest.models import Subscriber

Purpose = Literal["manage", "unsubscribe", "feed"]
_TOKEN = re.compile(r"(\d{1,12})-([0-9a-f]{32})")
_DIGEST_MARK = re.compile(r"<digest\.\d+\.([0-9a-f]{16})@")


def token(subscriber: Subscriber, purpose: Purpose) -> str:
    return f"{subscriber.id}-{_mac(subscriber.secret, purpose)}"


def _mac(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:32]


def parse_token(text: str) -> int | None:
    """The subscriber id a token claims, or None when it is not shaped like a token."""
    found = _TOKEN.fullmatch(text)
    return int(found.group(1)) if found else None


def resolve(
    text: str, purpose: Purpose, by_id: Callable[[int], Subscriber | None]
) -> Subscriber | None:
    """The subscriber whose ``purpose`` token ``text`` is, found with ``by_id`` (the store's
    lookup); None when it is forged, revoked (a new secret) or names nobody."""
    subscriber_id = parse_token(text)
    found = by_id(subscriber_id) if subscriber_id is not None else None
    return found if found is not None and verify(found, text, purpose) else None


def verify(subscriber: Subscriber, text: str, purpose: Purpose) -> bool:
    """Whether ``text`` is this subscriber's token for ``purpose``."""
    return hmac.compare_digest(text.encode(), token(subscriber, purpose).encode())


@dataclass(frozen=True, slots=True)
class Links:
    """The links printed in a digest's footer and in its List-Unsubscribe header."""

    manage: str
    unsubscribe: str
    feed_atom: str
    feed_rss: str
    matches: str  # ``<base>/matches/<feed token>``: a digest's mark completes it (``more``)

    def more(self, message_id: str) -> str:
        """The page listing the matches a digest counted but had no room for.

        Keyed by the digest's own Message-ID mark, so an old mail keeps pointing at
        its own papers, and by the feed token: the page shows what the feed shows.
        """
        found = _DIGEST_MARK.match(message_id)
        return f"{self.matches}/{found.group(1) if found else 'none'}"


def links_for(subscriber: Subscriber, base_url: str) -> Links:
    """Every link of one subscriber, under the web front's ``base_url``."""
    base = base_url.rstrip("/")
    feed = token(subscriber, "feed")
    return Links(
        manage=f"{base}/manage/{token(subscriber, 'manage')}",
        unsubscribe=f"{base}/unsubscribe/{token(subscriber, 'unsubscribe')}",
        feed_atom=f"{base}/feeds/{feed}.atom",
        feed_rss=f"{base}/feeds/{feed}.rss",
        matches=f"{base}/matches/{feed}",
    )
