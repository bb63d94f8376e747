"""What a send run reports: one line per digest, the run as a whole, and failure reasons.

Shared by the two halves of ``digest send``: building and recording (``outbox``)
and delivering (``delivery``).  Plain data, no I/O.
"""

from dataclasses import dataclass, field
from typing import Literal

from digest.errors import DigestError
from digest.store import Waiting

Status = Literal["queued", "sent", "deferred", "failed", "skipped", "dry-run"]


@dataclass(slots=True)
class DigestReport:
    """One line of ``digest send``: what happened to one subscriber's digest."""

    email: str
    status: Status
    papers: int
    message_id: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "status": self.status,
            "papers": self.papers,
            "message_id": self.message_id,
            "error": self.error,
        }


@dataclass(slots=True)
class SendReport:
    digests: list[DigestReport] = field(default_factory=list)
    not_due: int = 0
    error: str | None = None
    waiting: Waiting = field(default_factory=Waiting)  # left in the outbox, whoever built it
    stopped: bool = False  # a stop cut the run short: some due digests were not built or sent

    def count(self, status: Status) -> int:
        return sum(1 for d in self.digests if d.status == status)

    def as_json(self) -> dict[str, object]:
        return {
            "sent": self.count("sent"),
            "deferred": self.count("deferred"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "digests": [d.as_json() for d in self.digests],
            "waiting": self.waiting.as_json(),
        }


def failure_reason(err: BaseException) -> str:
    """One line: a DigestError's own words, else the exception's type and message."""
    text = err.message if isinstance(err, DigestError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())
