"""Link tokens: ``<subscriber id>-<HMAC-SHA256 of the purpose under the subscriber's secret>``,
cut to 32 hex digits (20 for feedback), whatever key came before."""

import hashlib
import hmac

import pytest

from digest import links
from digest.models import Subscriber

SECRETS = [
    "s3cret",
    "x" * 64,
    "a much longer secret than one SHA-256 block of 64 bytes" * 3,
    "Grüße",
]


def person(number: int, secret: str) -> Subscriber:
    return Subscriber(
        number, f"p{number}@example.org", "", "agents", "daily", "html", "active", "cli",
        secret, 0, "2026-11-24T07:00:00Z", "2026-11-24T07:00:00Z",
    )  # fmt: skip


def expected(secret: str, purpose: str, chars: int) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:chars]


@pytest.mark.parametrize("purpose", ["manage", "unsubscribe", "feed"])
def test_a_token_is_the_subscriber_id_and_the_hmac_of_its_purpose(purpose: links.Purpose) -> None:
    for number, secret in enumerate(SECRETS * 2, start=1):  # keys met again, in turn
        token = links.token(person(number, secret), purpose)
        assert token == f"{number}-{expected(secret, purpose, links.MAC_CHARS)}"


def test_a_feedback_token_signs_the_paper_and_the_verdict() -> None:
    for number, secret in enumerate(SECRETS * 2, start=1):
        for paper, verdict in [("2411.01234", "more"), ("2411.01234", "less"), ("x/9", "more")]:
            token = links.feedback_token(person(number, secret), paper, verdict)  # type: ignore[arg-type]
            purpose = f"feedback:{paper}:{verdict}"
            assert token == f"{number}-{expected(secret, purpose, links.FEEDBACK_MAC_CHARS)}"


def test_a_new_secret_changes_every_token() -> None:
    before, after = person(7, "old secret"), person(7, "new secret")
    for purpose in ("manage", "unsubscribe", "feed"):
        assert links.token(before, purpose) != links.token(after, purpose)  # type: ignore[arg-type]
        assert not links.verify(after, links.token(before, purpose), purpose)  # type: ignore[arg-type]
