"""Fetching: each ``[[sources]]`` asked for its papers when due, into the one ingest path.

A source is asked no more often than its ``every``, later after failures
(``sources.backoff``) or when it said so (``Retry-After``), and conditionally
(its last ETag and Last-Modified), so an unchanged listing costs one small
request and adds nothing.  A response that changed is archived as it came
(``archive``) and then ingested exactly as a dump from the inbox would be
(``ingest.ingest_response``).  Each source's outcome is remembered in the store
(``SourceState``) for ``digest status``, ``/healthz`` and the next decision.

Every source fails alone: any error while fetching, archiving or storing one
is that source's failure (one log line, its state, its back-off) and the
others go on.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Literal

from digest import archive
from digest.config import Config, FetchConfig, SourceTable
from digest.errors import DigestError, SourceFailed, UsageError
from digest.models import FileResult
from digest.responses import Response, ingest_response
from digest.sources import Parsed
from digest.sources.backoff import next_attempt
from digest.sources.http import SourceClient, Validators, user_agent
from digest.store import SourceState, Store, iso

log = logging.getLogger("digest")

Asking = Literal["when-due", "now", "force"]
Outcome = Literal["ingested", "duplicate", "not-modified", "failed", "not-due"]


@dataclass(slots=True)
class FetchResult:
    """What asking one source did; the shape of ``digest fetch --json``."""

    source: str
    status: Outcome
    entries: int = 0
    new: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    archived: str | None = None
    next_attempt: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "status": self.status,
            "entries": self.entries,
            "new": self.new,
            "skipped": self.skipped,
            "error": self.error,
            "archived": self.archived,
            "next_attempt": self.next_attempt,
        }


def make_client(settings: FetchConfig) -> SourceClient:
    """The one HTTP client of a run, configured from ``[fetch]``."""
    return SourceClient(
        user_agent(settings.contact_url or None),
        connect_timeout=settings.connect_timeout_seconds,
        total_timeout=settings.timeout_seconds,
        max_redirects=settings.max_redirects,
        max_bytes=settings.max_megabytes << 20,
    )


def chosen(config: Config, name: str | None, day: date | None = None) -> list[SourceTable]:
    """The enabled sources, or the one named (enabled or not: asked for by name); with a
    ``day``, only those that can give a past day's listing (``daily-papers``)."""
    if name is None:
        found = [source for source in config.sources if source.enabled]
        return [s for s in found if s.kind == "daily-papers"] if day else found
    source = config.source_named(name)
    if source is None:
        known = ", ".join(s.name for s in config.sources) or "none configured"
        raise UsageError(f"no source named {name!r} in [[sources]] (known: {known})")
    if day:
        _check_backfill(source)
    return [source]


def fetch_all(
    store: Store,
    config: Config,
    client: SourceClient,
    now: datetime,
    sources: Iterable[SourceTable],
    *,
    asking: Asking = "when-due",
    day: date | None = None,
    on_result: Callable[[FetchResult], object] | None = None,
) -> list[FetchResult]:
    """Ask each source that may be asked (``fetch_source``); each fails alone.

    ``on_result`` hears of each source as it is done, so that what one source
    brought goes on (feeds, delivery) while a slow one is still being asked.  A
    cancelled ``client`` (the service stopping) ends the run: the sources not
    asked yet wait for the next one, with nothing recorded against them.
    """
    results = []
    for source in sources:
        if client.cancelled:
            break
        try:
            result = fetch_source(store, config, client, source, now, asking=asking, day=day)
        except Exception as err:  # the boundary: one source never stops the others
            reason = str(err) if isinstance(err, DigestError) else f"{type(err).__name__}: {err}"
            log.error(
                "source %s: %s", source.name, reason, exc_info=not isinstance(err, DigestError)
            )
            result = _failed(store, source, now, reason, None)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def fetch_source(
    store: Store,
    config: Config,
    client: SourceClient,
    source: SourceTable,
    now: datetime,
    *,
    asking: Asking = "when-due",
    day: date | None = None,
) -> FetchResult:
    """Ask one source, if it may be asked, and ingest what changed.

    ``asking``: ``when-due`` (the service) waits for the source's next attempt;
    ``now`` (``digest fetch``) asks at once unless the source is backing off
    after failures or asked to be left alone (``Retry-After``); ``force`` asks
    whatever.  ``day`` asks a ``daily-papers`` source for the listing of that
    date (a backfill): unconditional, and it leaves the source's state alone,
    which is about its regular listing.
    """
    state = store.source_state(source.name)
    if not _may_ask(state, now, asking):
        return FetchResult(source.name, "not-due", next_attempt=state.next_attempt)
    regular = day is None
    url = url_for(source, day)
    validators = validators_of(state) if regular else Validators()
    try:
        fetched = client.get(url, validators)
    except SourceFailed as err:
        if client.cancelled:  # not the source's fault: nothing recorded, no back-off
            return FetchResult(source.name, "failed", error=str(err))
        log.error("source %s: %s", source.name, err)
        if not regular:
            return FetchResult(source.name, "failed", error=str(err))
        return _failed(store, source, now, str(err), err.retry_after)
    if fetched is None:
        _succeeded(store, source, state, now, validators)
        return FetchResult(source.name, "not-modified", next_attempt=_next(source, now))
    listing = (day or now.astimezone(UTC).date()).isoformat()
    stored, parsed, archived = _store(store, config, source, listing, fetched.body, now)
    if stored.status == "rejected":
        reason = stored.error or "rejected"
        log.error("source %s: %s (kept as %s)", source.name, reason, archived)
        if not regular:
            return FetchResult(source.name, "failed", error=reason, archived=archived)
        return replace(_failed(store, source, now, reason, None), archived=archived)
    if parsed.skipped:
        log.warning(
            "source %s: skipped %d item(s): %s",
            source.name,
            len(parsed.skipped),
            "; ".join(parsed.skipped[:5]) + ("; …" if len(parsed.skipped) > 5 else ""),
        )
    if regular:
        _succeeded(store, source, state, now, fetched.validators)
    log.info(
        "source %s: %s, %d entries, %d new", source.name, stored.status, stored.entries, stored.new
    )
    return FetchResult(
        source.name,
        "ingested" if stored.status == "ingested" else "duplicate",
        stored.entries,
        stored.new,
        parsed.skipped,
        archived=archived,
        next_attempt=_next(source, now) if regular else state.next_attempt,
    )


def _may_ask(state: SourceState, now: datetime, asking: Asking) -> bool:
    waiting = state.next_attempt is not None and iso(now) < state.next_attempt
    if asking == "force" or not waiting:
        return True
    return asking == "now" and state.failures == 0


def _store(
    store: Store, config: Config, source: SourceTable, listing: str, body: bytes, now: datetime
) -> tuple[FileResult, Parsed, str | None]:
    """Archive the response, then ingest it; a duplicate's copy is dropped (the first is
    kept), so the archive holds each response once and never one that was not offered."""
    name = archive.name_for(source.name, source.kind, listing, now)
    path = config.fetch.archive_dir / name
    response = Response(source.name, source.kind, listing, body, name)
    # Not fresh: the same instant fetched twice (a fixed clock), or bytes rejected before
    # (a login page served for days: archived once, not at every retry).
    fresh = not path.exists() and store.rejection_by_hash(response.sha256) is None
    if fresh:
        archive.keep(config.fetch.archive_dir, name, body)
    stored, parsed = ingest_response(store, response, now)
    if stored.status != "duplicate":
        return stored, parsed, name if fresh or path.exists() else None
    if fresh:
        path.unlink(missing_ok=True)
    return stored, parsed, None


def url_for(source: SourceTable, day: date | None) -> str:
    """The source's URL, for ``day``'s listing when one is asked for (daily-papers only)."""
    if day is None:
        return source.url
    _check_backfill(source)
    joiner = "&" if "?" in source.url else "?"
    return f"{source.url}{joiner}date={day.isoformat()}"


def _check_backfill(source: SourceTable) -> None:
    """Only the Daily Papers API gives a past day's listing (``?date=``)."""
    if source.kind != "daily-papers":
        raise UsageError(
            f"source {source.name}: --date works with daily-papers sources only "
            f"(this one is {source.kind})"
        )


def validators_of(state: SourceState) -> Validators:
    return Validators(state.etag, state.last_modified)


def _next(source: SourceTable, now: datetime) -> str:
    return iso(next_attempt(now, source.interval, 0, None))


def _succeeded(
    store: Store, source: SourceTable, state: SourceState, now: datetime, validators: Validators
) -> None:
    store.save_source_state(
        replace(
            state,
            etag=validators.etag,
            last_modified=validators.last_modified,
            last_attempt=iso(now),
            last_success=iso(now),
            failures=0,
            next_attempt=_next(source, now),
        )
    )


def _failed(
    store: Store, source: SourceTable, now: datetime, reason: str, retry_after: float | None
) -> FetchResult:
    """Remember the failure and put the next attempt off (back-off, or as the source said).

    When the store itself is what failed, the failure is only reported: the next
    attempt then comes at the next fetch job, as nothing was recorded.
    """
    try:
        state = store.source_state(source.name)
        failures = state.failures + 1
        after = iso(next_attempt(now, source.interval, failures, retry_after))
        store.save_source_state(
            replace(
                state,
                last_attempt=iso(now),
                last_error=reason,
                last_error_at=iso(now),
                failures=failures,
                next_attempt=after,
            )
        )
    except Exception as err:  # the store is down: say so, keep the source's own reason
        log.error("source %s: cannot record the failure: %s", source.name, err)
        return FetchResult(source.name, "failed", error=reason)
    return FetchResult(source.name, "failed", error=reason, next_attempt=after)
