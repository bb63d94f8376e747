"""The config's ``[[subscribers]]``: bringing the declared subscribers into the database.

The sync runs when the service loads its config (start, SIGHUP) and on
``digest subscribers sync [--dry-run]``, never inside other commands.  It plans
every step first (``SyncStep``: add, update, retire, restore, or a reason to
leave someone alone), logs each once, and makes each change through
``lifecycle``, whose rules it never bends: an unsubscribe stays final, and the
settings a subscriber chose stay theirs.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from digest.config import Config
from digest.errors import ConfigError, DigestError, QueryError
from digest.lifecycle import (
    SETTINGS,
    change_status,
    insert_new,
    restore,
    retired_by_config,
    take_over_settings,
)
from digest.models import Subscriber
from digest.store import Store
from digest.subscribers import Wanted, check, get

log = logging.getLogger("digest.lifecycle")


@dataclass(frozen=True, slots=True)
class SyncStep:
    """One thing the config sync does, or (``keep-…``) declines to do, and why."""

    email: str
    what: Literal["add", "update", "retire", "restore", "keep-unsubscribed", "keep-own-settings"]
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.what:<18} {self.email}" + (f"  ({self.detail})" if self.detail else "")


def sync_config(
    store: Store, declared: Sequence[Wanted], source: str, now: datetime, *, dry_run: bool = False
) -> list[SyncStep]:
    """Make the database agree with ``[[subscribers]]``, within the lifecycle's rules.

    Declared and missing: added.  Declared with config-owned settings: updated.
    No longer declared: unsubscribed.  Never touched: anyone who unsubscribed,
    and the settings of anyone who owns them.  Each step is logged once.
    """
    checked = [_check_declared(w, i, source) for i, w in enumerate(declared, start=1)]
    _refuse_duplicates(checked, source)
    plan = _plan(store, checked)
    for step in plan:
        log.info("config sync: %s", step)
    if dry_run:
        return plan
    wanted = {w.email.casefold(): w for w in checked}
    for step in plan:
        _apply(store, step, wanted, now)
    return plan


def sync_declared(
    store: Store, config: Config, now: datetime, *, dry_run: bool = False
) -> list[SyncStep]:
    """``sync_config`` with the ``[[subscribers]]`` of ``config``; nothing without a file.

    Built-in defaults declare nobody, and must not retire anyone a real config declared.
    """
    if config.source is None:
        log.info("config sync: no config file, so no [[subscribers]] to sync")
        return []
    declared = [Wanted(**table.model_dump()) for table in config.subscribers]
    return sync_config(store, declared, str(config.source), now, dry_run=dry_run)


def _refuse_duplicates(checked: Sequence[Wanted], source: str) -> None:
    """One table per address (compared as stored): two would each win half of the sync."""
    first: dict[str, int] = {}
    for index, wanted in enumerate(checked, start=1):
        seen = first.setdefault(wanted.email.casefold(), index)
        if seen != index:
            raise ConfigError(
                f"{source}: [[subscribers]] #{index}: {wanted.email} is declared in #{seen} too"
            )


def _check_declared(wanted: Wanted, index: int, source: str) -> Wanted:
    try:
        return check(wanted)
    except QueryError as err:
        raise ConfigError(f"{source}: [[subscribers]] #{index} filter: {err}") from None
    except DigestError as err:
        raise ConfigError(f"{source}: [[subscribers]] #{index}: {err.message}") from None


def _plan(store: Store, checked: Sequence[Wanted]) -> list[SyncStep]:
    steps: list[SyncStep] = []
    declared = {w.email.casefold() for w in checked}
    for wanted in checked:
        current = store.subscriber(wanted.email)
        retired = current is not None and retired_by_config(store, current)
        step = _step_for(wanted, current, retired)
        if step is not None:
            steps.append(step)
    for current in store.subscribers():
        gone = current.source == "config" and current.email.casefold() not in declared
        if gone and current.status != "unsubscribed":
            steps.append(SyncStep(current.email, "retire", "no longer in [[subscribers]]"))
    return steps


def _step_for(wanted: Wanted, current: Subscriber | None, retired: bool) -> SyncStep | None:
    if current is None:
        return SyncStep(wanted.email, "add")
    differs = [k for k in SETTINGS if getattr(wanted, k) != getattr(current, k)]
    if retired:
        return SyncStep(wanted.email, "restore", "declared again after the config dropped them")
    if current.status == "unsubscribed":
        return SyncStep(
            wanted.email,
            "keep-unsubscribed",
            f"unsubscribed {current.updated_at[:10]}; only they can subscribe again",
        )
    if current.settings_owner == "subscriber":
        if not differs:
            return None
        return SyncStep(
            wanted.email, "keep-own-settings", f"they changed {', '.join(differs)} themselves"
        )
    if differs or current.source != "config" or current.settings_owner != "config":
        return SyncStep(wanted.email, "update", ", ".join(differs) or "now declared here")
    return None


def _apply(store: Store, step: SyncStep, wanted: Mapping[str, Wanted], now: datetime) -> None:
    if step.what == "add":
        insert_new(store, wanted[step.email.casefold()], "config", now)
    elif step.what == "update":
        fields = {k: getattr(wanted[step.email.casefold()], k) for k in SETTINGS}
        take_over_settings(store, get(store, step.email), fields, now, step.detail)
    elif step.what == "retire":
        change_status(store, get(store, step.email), "unsubscribe", "config", now, step.detail)
    elif step.what == "restore":
        person = restore(store, get(store, step.email), now)
        if person.settings_owner == "config":
            _apply(store, SyncStep(step.email, "update", "declared again"), wanted, now)
