"""Per-subscriber links: manage, unsubscribe, private feed, the papers a digest had no
room for, and "more like this" / "not for me" on each paper, without accounts or passwords.

A link token is ``<subscriber id>-<HMAC of a purpose under the subscriber's
secret>``: unguessable, different per purpose (a leaked feed URL cannot
unsubscribe anyone), checked in constant time, and nothing derived is stored.
Changing a subscriber's secret revokes every link at once.

A feedback link's purpose is ``feedback:<paper id>:<verdict>``, so a link for one
paper or verdict says nothing about another.  Its HMAC is cut to 80 bits (20 hex
digits, against 128 for the others): a digest prints two per paper, up to fifty, and
a forged one could only record a verdict, while 2^80 guesses are out of reach online.
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from digest.models import Subscriber, Verdict

Purpose = Literal["manage", "unsubscribe", "feed"]
MAC_CHARS = 32
FEEDBACK_MAC_CHARS = 20
VERDICT_LABELS: dict[Verdict, str] = {"more": "More like this", "less": "Not for me"}
_TOKEN = re.compile(r"(\d{1,12})-([0-9a-f]{20}|[0-9a-f]{32})")
_DIGEST_MARK = re.compile(r"<digest\.\d+\.([0-9a-f]{16})@")


def token(subscriber: Subscriber, purpose: Purpose) -> str:
    return _token(subscriber, purpose, MAC_CHARS)


def feedback_token(subscriber: Subscriber, paper_id: str, verdict: Verdict) -> str:
    """The token of one reader's one verdict on one paper."""
    return _token(subscriber, _feedback_purpose(paper_id, verdict), FEEDBACK_MAC_CHARS)


def feedback_path(subscriber: Subscriber, paper_id: str, verdict: Verdict) -> str:
    """``/feedback/<token>/<paper id>/<verdict>``: the web front's path for the verdict."""
    return f"/feedback/{feedback_token(subscriber, paper_id, verdict)}/{paper_id}/{verdict}"


def _feedback_purpose(paper_id: str, verdict: Verdict) -> str:
    return f"feedback:{paper_id}:{verdict}"


def _token(subscriber: Subscriber, purpose: str, chars: int) -> str:
    mac = _keyed(subscriber.secret).copy()
    mac.update(purpose.encode())
    return f"{subscriber.id}-{mac.hexdigest()[:chars]}"


@lru_cache(maxsize=64)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC that has taken in ``secret`` as its key, to copy for each token: a digest
    signs about fifty links under one key, and taking the key in was a third of each."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def parse_token(text: str) -> int | None:
    """The subscriber id a token claims, or None when it is not shaped like a token."""
    found = _TOKEN.fullmatch(text)
    return int(found.group(1)) if found else None


def resolve(
    text: str, purpose: Purpose, by_id: Callable[[int], Subscriber | None]
) -> Subscriber | None:
    """The subscriber whose ``purpose`` token ``text`` is, found with ``by_id`` (the store's
    lookup); None when it is forged, revoked (a new secret) or names nobody."""
    return _resolve(text, lambda found: token(found, purpose), by_id)


def resolve_feedback(
    text: str, paper_id: str, verdict: Verdict, by_id: Callable[[int], Subscriber | None]
) -> Subscriber | None:
    """The subscriber whose token ``text`` is for this verdict on this paper, or None."""
    return _resolve(text, lambda found: feedback_token(found, paper_id, verdict), by_id)


def _resolve(
    text: str,
    expected: Callable[[Subscriber], str],
    by_id: Callable[[int], Subscriber | None],
) -> Subscriber | None:
    subscriber_id = parse_token(text)
    found = by_id(subscriber_id) if subscriber_id is not None else None
    if found is None or not hmac.compare_digest(text.encode(), expected(found).encode()):
        return None
    return found


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
    base: str  # the web front's base URL, without a trailing slash
    subscriber: Subscriber = field(repr=False, compare=False)  # signs ``feedback``

    def more(self, message_id: str) -> str:
        """The page listing the matches a digest counted but had no room for.

        Keyed by the digest's own Message-ID mark, so an old mail keeps pointing at
        its own papers, and by the feed token: the page shows what the feed shows.
        """
        found = _DIGEST_MARK.match(message_id)
        return f"{self.matches}/{found.group(1) if found else 'none'}"

    def feedback(self, paper_id: str, verdict: Verdict) -> str:
        """The one-click link that records ``verdict`` on the paper (after a button)."""
        return self.base + feedback_path(self.subscriber, paper_id, verdict)


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
        base=base,
        subscriber=subscriber,
    )
