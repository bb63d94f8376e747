"""Web security: expiring confirm tokens, CSRF double-submit tokens, a per-address rate limit.

Everything here is keyed by the one web signing key (``[web] secret_env``) and
reads time from the app's clock, so expiry is testable without sleeping.

* Confirm tokens (double opt-in) are itsdangerous timed signatures over the
  subscriber id, the address and the filter asked for: nothing is stored, they
  expire after ``[web] confirm_hours``, a token for one address never confirms
  another, and a later request never changes what an earlier link confirms.
* CSRF: a random value in an HttpOnly, SameSite=Lax ``csrftoken`` cookie, and a
  signature of that value in a hidden form field.  A cross-site form can neither
  read the cookie nor forge the signature.
* The rate limit is an in-memory sliding window per client address: simple,
  exact, and enough for one process (it resets on restart, which is fine for
  an anti-abuse limit).
"""

import hmac
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

Clock = Callable[[], datetime]
CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 7 * 24 * 3600  # a form left open for a week still posts
MAX_TRACKED_ADDRESSES = 100_000


class TokenExpired(Exception):
    """A well-signed confirm token older than its lifetime."""


def _signer_for(clock: Clock) -> type[TimestampSigner]:
    """A TimestampSigner whose notion of now is ``clock`` (both for signing and for expiry)."""

    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock().timestamp())

    return ClockedSigner


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    """What a confirmation link says: this address asked, at this time, for this filter."""

    subscriber_id: int
    email: str
    filter: str
    requested_at: datetime


class ConfirmTokens:
    """Signed, expiring tokens that say "this address asked to subscribe as this id"."""

    def __init__(self, secret: str, max_age_seconds: int, clock: Clock) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="confirm", signer=_signer_for(clock))
        self._max_age = max_age_seconds

    def make(self, subscriber_id: int, email: str, query: str) -> str:
        return self._serializer.dumps([subscriber_id, email, query])

    def read(self, token: str) -> ConfirmRequest | None:
        """The request a token was made for; None if forged; TokenExpired if too old."""
        try:
            found, signed_at = self._serializer.loads(
                token, max_age=self._max_age, return_timestamp=True
            )
        except SignatureExpired:
            raise TokenExpired from None
        except BadSignature:
            return None
        match found:
            case [int() as subscriber_id, str() as email, str() as query]:
                return ConfirmRequest(subscriber_id, email, query, signed_at)
        return None


class Csrf:
    """Double-submit tokens: the cookie holds a random value, the form a signature of it."""

    def __init__(self, secret: str, clock: Clock) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="csrf", signer=_signer_for(clock))

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def field_for(self, cookie: str) -> str:
        """The hidden form value that goes with this cookie value."""
        return self._serializer.dumps(cookie)

    def valid(self, cookie: str | None, field: str | None) -> bool:
        if not cookie or not field:
            return False
        try:
            signed = self._serializer.loads(field, max_age=CSRF_MAX_AGE)
        except BadSignature:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, cookie)


class RateLimit:
    """At most ``limit`` hits per ``window`` seconds per key, as a sliding window log."""

    def __init__(self, limit: int, window_seconds: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # handlers run on a thread pool

    def hit(self, key: str) -> int:
        """Record a hit and return 0, or refuse it and return the seconds until one is allowed."""
        with self._lock:
            return self._hit(key, self._clock().timestamp())

    def _hit(self, key: str, now: float) -> int:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        if len(self._hits) > MAX_TRACKED_ADDRESSES:
            self._forget_idle(now)
        return 0

    def _forget_idle(self, now: float) -> None:
        """Drop addresses with no hit inside the window (bounded memory under a flood)."""
        for key in [k for k, hits in self._hits.items() if hits[-1] <= now - self.window]:
            del self._hits[key]
