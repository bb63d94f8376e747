"""What the outbox holds, how a run ends, and retries after a relay problem.

Exit statuses of ``digest send`` and ``digest run --once`` (``exit_status``):

* 0: every digest of the run went out and nothing waits in the outbox;
* 75 (EX_TEMPFAIL): nothing failed, but digests wait for a retry: deferred by
  the relay (4xx, network), or all left queued because the transport could not
  be used at all (relay unreachable, login refused: the error line says which).
  Nothing is lost; the next run (or the daemon) sends them.  This counts
  digests left waiting by earlier runs too;
* 1: a digest of this run failed (5xx, or it could not be built); the others
  went on.  Failures win over waiting.

``retry`` puts digests back in the outbox with the same bytes and Message-ID:
deferred ones become due now; with ``failed``, failed ones that still hold their
message (built within ``[storage] keep_failed_days``; a digest that could not be
built has none) are queued again.  A digest whose subscriber is no longer
``active`` is left as it is: retrying would only fail it again as "not sent".
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest.store import OutboxRow, Store, iso

if TYPE_CHECKING:  # the outbox pulls in rendering and mail: `digest status` needs neither
    from digest.outbox import SendReport, Status

EX_OK = 0
EX_FAILED = 1
EX_TEMPFAIL = 75
FAILED_WINDOW = timedelta(days=7)  # `digest status` counts the failures of the last week
COUNTED: tuple["Status", ...] = ("sent", "deferred", "failed", "skipped")
_COUNT = re.compile(r"(\d+) (sent|deferred|failed|skipped)\b")


def exit_status(report: "SendReport", *, dry_run: bool = False) -> int:
    """1 when a digest of the run failed, 75 when some wait for a retry, else 0."""
    if report.count("failed"):
        return EX_FAILED
    if dry_run:
        return EX_OK
    if report.error is not None or report.waiting.total or report.count("deferred"):
        return EX_TEMPFAIL
    return EX_OK


def summary(report: "SendReport") -> str:
    """One line for the log and ``job_runs.summary``: this run's counts, then what waits."""
    counts = ", ".join(f"{report.count(s)} {s}" for s in COUNTED)
    text = f"{counts}; {report.not_due} not due"
    waiting = report.waiting
    if waiting.total:
        text += f"; waiting: {waiting.queued} queued, {waiting.deferred} deferred"
    return text


def waiting_line(report: "SendReport") -> str | None:
    """What the run left in the outbox, for ``digest send``'s output; None when empty."""
    waiting = report.waiting
    if not waiting.total:
        return None
    line = f"waiting in the outbox: {waiting.queued} queued, {waiting.deferred} deferred"
    if waiting.next_attempt_at:
        line += f" (next attempt {waiting.next_attempt_at})"
    return line + "; see `digest outbox list`"


# status ------------------------------------------------------------------------------------


def status(store: Store, now: datetime) -> dict[str, Any]:
    """The outbox by state, bouncing subscribers and the last delivery run (``digest status``)."""
    waiting = store.waiting()
    since = iso(now - FAILED_WINDOW)
    run = store.last_delivery_run()
    if run is not None:
        run["counts"] = run_counts(run["summary"])
    return {
        "outbox": {
            "queued": waiting.queued,
            "sending": store.digest_counts().get("sending", 0),
            "deferred": waiting.deferred,
            "next_attempt_at": waiting.next_attempt_at,
            "failed_last_7_days": store.failed_since(since),
        },
        "bouncing": store.subscriber_counts().get("bouncing", 0),
        "last_delivery": run,
    }


def run_counts(text: str | None) -> dict[str, int] | None:
    """The counts of a run's summary (written by ``summary``); None for any other text."""
    head = (text or "").split(";", 1)[0]
    found = {name: int(number) for number, name in _COUNT.findall(head)}
    return found if set(found) == set(COUNTED) else None


# retry -------------------------------------------------------------------------------------


@dataclass(slots=True)
class RetryReport:
    """What ``digest outbox retry`` did: made due, requeued, and left alone (with why)."""

    due: list[OutboxRow] = field(default_factory=list)
    requeued: list[OutboxRow] = field(default_factory=list)
    left: list[tuple[OutboxRow, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "due": [r.as_json() for r in self.due],
            "requeued": [r.as_json() for r in self.requeued],
            "left": [r.as_json() | {"reason": why} for r, why in self.left],
        }


def retry(
    store: Store,
    now: datetime,
    *,
    failed: bool = False,
    since: datetime | None = None,
    subscriber_id: int | None = None,
) -> RetryReport:
    """Deferred digests due now; with ``failed``, failed ones with their message queued again."""
    statuses = ("deferred", "failed") if failed else ("deferred",)
    rows = store.retry_candidates(statuses, iso(since) if since else None, subscriber_id)
    report = RetryReport()
    chosen: list[OutboxRow] = []
    for row in rows:
        why = _not_retried(row)
        if why is None:
            chosen.append(row)
        else:
            report.left.append((row, why))
    deferred = [r for r in chosen if r.status == "deferred"]
    failures = [r for r in chosen if r.status == "failed"]
    store.make_due([r.id for r in deferred], iso(now))
    store.requeue_failed([r.id for r in failures])
    report.due, report.requeued = deferred, failures
    return report


def _not_retried(row: OutboxRow) -> str | None:
    """Why this digest stays as it is, or None to retry it."""
    if row.subscriber_status != "active":
        return f"subscriber is {row.subscriber_status}"
    if not row.has_message:
        return "no message kept (it could not be built, or is older than keep_failed_days)"
    return None


def listing(store: Store, statuses: Sequence[str] | None, limit: int) -> list[OutboxRow]:
    """Digests for ``digest outbox list``, newest first."""
    return store.outbox_rows(statuses, limit)
