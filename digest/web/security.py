"""Web security: the signing key, expiring confirm tokens, CSRF tokens, rate limits.

Everything here is keyed by the one web signing key (``[web] secret_env``) and
reads time from the app's clock, so expiry is testable without sleeping.

* Confirm tokens (double opt-in) are itsdangerous timed signatures over the
  subscriber id, the address and the filter asked for: nothing is stored, they
  expire after ``[web] confirm_hours``, a token for one address never confirms
  another, and a later request never changes what an earlier link confirms.
* CSRF: a random value in an HttpOnly, SameSite=Lax ``csrftoken`` cookie, and a
  signature of that value in a hidden form field.  A cross-site form can neither
  read the cookie nor forge the signature.
* The signing key must be at least ``MIN_KEY_BYTES`` long and not the
  placeholder of ``deploy/secrets.env.example``: a key anyone can read or guess
  lets anyone forge confirm links for any address.
* Rate limits are in-memory sliding windows keyed by a string (a client
  address, a recipient address): simple, exact, and enough for one process
  (they reset on restart, which is fine for an anti-abuse limit).  ``admit``
  counts one request against several limits at once, or against none, so a
  request refused by one limit does not use up another.
"""

import contextlib
import hmac
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from digest.errors import ConfigError

Clock = Callable[[], datetime]
MIN_KEY_BYTES = 32
PLACEHOLDER_KEYS = frozenset({"change-me-too", "change-me"})  # deploy/secrets.env.example
KEY_RECIPE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 7 * 24 * 3600  # a form left open for a week still posts
MAX_TRACKED_ADDRESSES = 100_000


def check_signing_key(key: str, variable: str) -> str:
    """``key`` if it is fit to sign links; ConfigError naming ``variable`` otherwise."""
    if key.strip() in PLACEHOLDER_KEYS:
        problem = "is still the placeholder from deploy/secrets.env.example"
    elif len(key.encode()) < MIN_KEY_BYTES:
        problem = f"is too short ({len(key.encode())} bytes; at least {MIN_KEY_BYTES} needed)"
    else:
        return key
    raise ConfigError(
        f"${variable} {problem}: it signs confirmation links and forms",
        f"generate one with {KEY_RECIPE} and keep it across restarts",
    )


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
        return admit((self, key))

    def _wait(self, key: str, now: float) -> int:
        """Seconds until ``key`` may have another hit (0: now); drops hits out of the window."""
        hits = self._hits.get(key)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if hits is None or len(hits) < self.limit:
            return 0
        return max(1, math.ceil(hits[0] + self.window - now))

    def _record(self, key: str, now: float) -> None:
        self._hits.setdefault(key, deque()).append(now)
        if len(self._hits) > MAX_TRACKED_ADDRESSES:
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop keys with no hit inside the window (bounded memory under a flood)."""
        for key in [
            k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window
        ]:
            del self._hits[key]


def admit(*checks: tuple[RateLimit, str]) -> int:
    """Count one request against every (limit, key), or against none of them.

    Returns 0 when every limit had room (each has recorded the hit), else the
    longest wait in seconds (nothing recorded).  Locks are taken in a fixed
    order, so two requests never deadlock and never both take the last place.
    """
    limits = sorted({id(limit): limit for limit, _ in checks}.values(), key=id)
    with contextlib.ExitStack() as held:
        for limit in limits:
            held.enter_context(limit._lock)
        moments = {id(limit): limit._clock().timestamp() for limit in limits}
        wait = max(limit._wait(key, moments[id(limit)]) for limit, key in checks)
        if wait == 0:
            for limit, key in checks:
                limit._record(key, moments[id(limit)])
        return wait
