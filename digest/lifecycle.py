"""The subscriber lifecycle: every change of state or settings, who may make it, and its history.

The CLI, the web front and the config sync (``declared``) only call this module;
none of them writes a subscriber's status or settings on its own.  The one
change made elsewhere is the delivery path's ``active`` → ``bouncing``, which
the store makes in the transaction that records the bounce, with the same kind
of history row (channel ``delivery``), as this table allows.

States: ``pending`` (asked on the web, not confirmed) → ``active`` ⇄ ``paused``;
any state → ``unsubscribed``; ``active`` → ``bouncing`` (the delivery path, after
``bounce_limit`` permanent failures).  ``TRANSITIONS`` is the whole table: for an
action through a channel, the state each current state moves to.  What it does
not list is refused.  Two rules shape it:

* **Only the subscriber brings an address back.**  Nothing moves an
  ``unsubscribed`` subscriber but their own confirmed request (double opt-in),
  whoever declared them: not the config, not the operator.  The one exception
  undoes the config's own act: a subscriber the config retired (dropped from
  ``[[subscribers]]``) is restored, to the state they were retired from, when
  the config declares them again, unless they unsubscribed themselves since.
* **Consent and deliverability differ.**  ``bouncing`` is the delivery path's
  judgement, so the operator may overrule it (``resume``) once the address or
  the relay is fixed; a confirmed request does too.

Settings (filter, name, frequency, format) have one owner at a time, kept in
``settings_owner``: the ``config`` for subscribers declared in
``[[subscribers]]``, the ``operator`` for those added with the CLI or a CSV,
and the ``subscriber`` for web sign-ups and anyone who saved the manage page.
A subscriber's own change makes them the owner for good: the config sync never
reverts it (it says so in the log and in ``subscribers sync --dry-run``), and
the operator changes a config-owned subscriber in the config, not with
``subscribers set``.

Every change appends a row to ``subscription_events`` (when, what, from what,
through which channel), shown by ``digest subscribers show``.
"""

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from digest.errors import DigestError, UsageError
from digest.errors import Refused as Refused
from digest.models import STATUSES, SettingsOwner, Source, Status, Subscriber
from digest.store import Store, iso
from digest.subscribers import Wanted, check, check_settings, get

Channel = Literal["subscriber", "operator", "config", "delivery"]
Action = Literal["create", "confirm", "pause", "resume", "unsubscribe", "restore", "bounce"]
CHANNELS: tuple[Channel, ...] = ("subscriber", "operator", "config", "delivery")
ACTIONS: tuple[Action, ...] = (
    "create",
    "confirm",
    "pause",
    "resume",
    "unsubscribe",
    "restore",
    "bounce",
)
SETTINGS = ("name", "filter", "frequency", "format")
SECRET_BYTES = 24
_ANY_BUT_UNSUBSCRIBED: dict[Status | None, Status] = {
    s: "unsubscribed" for s in STATUSES if s != "unsubscribed"
}

TRANSITIONS: Mapping[tuple[Action, Channel], Mapping[Status | None, Status]] = {
    ("create", "subscriber"): {None: "pending"},
    ("create", "operator"): {None: "active"},
    ("create", "config"): {None: "active"},
    ("confirm", "subscriber"): {
        "pending": "active",
        "unsubscribed": "active",
        "bouncing": "active",
        "active": "active",
        "paused": "paused",
    },
    ("pause", "subscriber"): {"active": "paused", "paused": "paused"},
    ("pause", "operator"): {"active": "paused", "paused": "paused"},
    ("resume", "subscriber"): {"paused": "active", "active": "active"},
    ("resume", "operator"): {"paused": "active", "bouncing": "active", "active": "active"},
    ("unsubscribe", "subscriber"): {**_ANY_BUT_UNSUBSCRIBED, "unsubscribed": "unsubscribed"},
    ("unsubscribe", "operator"): {**_ANY_BUT_UNSUBSCRIBED, "unsubscribed": "unsubscribed"},
    ("unsubscribe", "config"): {**_ANY_BUT_UNSUBSCRIBED, "unsubscribed": "unsubscribed"},
    ("restore", "config"): {"unsubscribed": "active"},  # only after a retire: see _step_for
    ("bounce", "delivery"): {"active": "bouncing", "bouncing": "bouncing"},
}
OWNER_OF: dict[Channel, SettingsOwner] = {
    "subscriber": "subscriber",
    "operator": "operator",
    "config": "config",
}
SOURCE_OF: dict[Channel, Source] = {"subscriber": "web", "operator": "cli", "config": "config"}
log = logging.getLogger(__name__)


def next_status(current: Status | None, action: Action, channel: Channel) -> Status:
    """The state ``action`` through ``channel`` leads to from ``current``; Refused if none."""
    found = TRANSITIONS.get((action, channel), {}).get(current)
    if found is None:
        raise Refused(*_refusal(current, action, channel))
    return found


def _refusal(current: Status | None, action: Action, channel: Channel) -> tuple[str, str]:
    if current == "unsubscribed" and action in ("resume", "confirm", "create"):
        return (
            "this subscriber unsubscribed: only they can subscribe again",
            "they sign up again on the web front and confirm the email",
        )
    if current is None:
        return f"{action} is not possible before the subscriber exists", "add them first"
    allowed = sorted(str(s) for s in TRANSITIONS.get((action, channel), {}))
    return (
        f"cannot {action} a subscriber who is {current} (through the {channel})",
        f"{action} applies to: {', '.join(allowed) or 'nobody through this channel'}",
    )


# status changes --------------------------------------------------------------------------


def change_status(
    store: Store,
    person: Subscriber,
    action: Action,
    channel: Channel,
    now: datetime,
    detail: str = "",
) -> Subscriber:
    """Apply ``action``; a change that leaves the state as it is records nothing, except
    a person's own unsubscribe after the config's (it makes the unsubscribe theirs, final)."""
    new = next_status(person.status, action, channel)
    if new == person.status:
        if action == "unsubscribe" and channel != "config" and retired_by_config(store, person):
            store.add_event(person.id, action, channel, new, new, detail, at=iso(now))
        return person
    with store.write():
        changes: dict[str, Any] = {"status": new, "updated_at": iso(now)}
        if new == "active":
            changes["bounces"] = 0
        store.update_subscriber(person.id, changes)
        store.add_event(person.id, action, channel, person.status, new, detail, at=iso(now))
    return _fresh(store, person)


def add(store: Store, wanted: Wanted, channel: Channel, now: datetime) -> Subscriber:
    """A new subscriber (``pending`` from the web, ``active`` otherwise); a known address
    is an error."""
    checked = check(wanted)
    if store.subscriber(checked.email) is not None:
        raise UsageError(
            f"{checked.email} is already subscribed", "use `digest subscribers set` to change it"
        )
    return insert_new(store, checked, channel, now)


def add_many(
    store: Store, checked: Sequence[Wanted], now: datetime, source: Source = "import"
) -> list[Subscriber]:
    """Insert already-checked subscribers in one transaction (the CSV import)."""
    with store.write():
        return [insert_new(store, wanted, "operator", now, source) for wanted in checked]


def insert_new(
    store: Store, wanted: Wanted, channel: Channel, now: datetime, source: Source | None = None
) -> Subscriber:
    """The subscriber and the first line of their history, together or not at all."""
    status = next_status(None, "create", channel)
    stamp = iso(now)
    with store.write():
        person = store.insert_subscriber(
            {
                "email": wanted.email,
                "name": wanted.name,
                "filter": wanted.filter,
                "frequency": wanted.frequency,
                "format": wanted.format,
                "status": status,
                "source": source or SOURCE_OF[channel],
                "settings_owner": OWNER_OF[channel],
                "secret": new_secret(),
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
        store.add_event(person.id, "create", channel, None, status, source or "", at=stamp)
    return person


def remove(
    store: Store,
    email: str,
    now: datetime,
    *,
    purge: bool = False,
    declared: Sequence[str] = (),
) -> Subscriber:
    """The operator unsubscribes someone (history kept), or with ``purge`` deletes them.

    A purge of an address the config still declares (``declared``) is refused: the
    next sync would add it again, active, as if it had never unsubscribed.
    """
    current = get(store, email)
    if purge and current.email.casefold() in {d.casefold() for d in declared}:
        raise Refused(
            f"{current.email} is still declared in the config's [[subscribers]]",
            "remove their table first, then purge",
        )
    if purge:
        store.delete_subscriber(current.id)
        return current
    return change_status(store, current, "unsubscribe", "operator", now)


def unsubscribe(store: Store, person: Subscriber, now: datetime) -> Subscriber:
    """The subscriber's own unsubscribe (the page's button or RFC 8058 one-click)."""
    return change_status(store, person, "unsubscribe", "subscriber", now)


# settings ------------------------------------------------------------------------------------


def change_settings(
    store: Store,
    person: Subscriber,
    changes: Mapping[str, str],
    channel: Channel,
    now: datetime,
    *,
    suggestions: bool | None = None,
) -> Subscriber:
    """Change some of name, filter, frequency, format, each checked as on add, and
    whether they want suggestions beside their matches (None: as it was).

    The subscriber's own change makes them the owner of their settings; the
    operator cannot change settings the config owns (the next sync would undo it).
    """
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise UsageError(f"not a setting: {', '.join(sorted(unknown))}")
    if channel == "operator" and person.settings_owner == "config":
        raise Refused(
            f"{person.email} is declared in the config's [[subscribers]]",
            "change their settings there, then run `digest subscribers sync`",
        )
    values = {k: changes.get(k, getattr(person, k)) for k in SETTINGS}
    merged = check_settings(Wanted(person.email, **values))
    fields = {k: getattr(merged, k) for k in SETTINGS if getattr(merged, k) != getattr(person, k)}
    if suggestions is not None and suggestions != person.suggestions:
        fields["suggestions"] = suggestions
    owner = "subscriber" if channel == "subscriber" else person.settings_owner
    if not fields and owner == person.settings_owner:
        return person
    with store.write():
        store.update_subscriber(
            person.id, {**fields, "settings_owner": owner, "updated_at": iso(now)}
        )
        detail = ", ".join(sorted(fields)) or "no change"
        store.add_event(
            person.id, "settings", channel, person.status, person.status, detail, at=iso(now)
        )
    return _fresh(store, person)


def take_over_settings(
    store: Store, person: Subscriber, fields: Mapping[str, str], now: datetime, detail: str
) -> Subscriber:
    """The config declares ``person``: its values become their settings, and the config
    their owner (the sync only calls this for settings no subscriber has taken)."""
    if person.settings_owner == "subscriber":
        raise Refused(f"{person.email} chose their own settings: the config cannot take them")
    with store.write():
        store.update_subscriber(
            person.id,
            {**fields, "source": "config", "settings_owner": "config", "updated_at": iso(now)},
        )
        store.add_event(
            person.id, "settings", "config", person.status, person.status, detail, at=iso(now)
        )
    return _fresh(store, person)


def set_by_operator(
    store: Store, email: str, changes: Mapping[str, str], now: datetime
) -> Subscriber:
    """``digest subscribers set``: settings, and a status among active, paused, unsubscribed."""
    person = get(store, email)
    settings = {k: v for k, v in changes.items() if k != "status"}
    if settings:
        person = change_settings(store, person, settings, "operator", now)
    if "status" in changes:
        person = change_status(store, person, _action_for(changes["status"]), "operator", now)
    return person


OPERATOR_SETS: dict[Status, Action] = {  # `subscribers set --status S`: the action it takes
    "active": "resume",
    "paused": "pause",
    "unsubscribed": "unsubscribe",
}


def _action_for(status: str) -> Action:
    if status not in OPERATOR_SETS:
        raise Refused(
            f"the operator cannot make a subscriber {status}",
            "pending comes from a web sign-up, bouncing from the delivery path",
        )
    return OPERATOR_SETS[status]


# the web sign-up ----------------------------------------------------------------------------

Kind = Literal["confirm", "known"]


def request(store: Store, wanted: Wanted, now: datetime) -> tuple[Subscriber, Kind]:
    """A sign-up request from the web: which email it calls for.

    An unknown address is stored ``pending``; any other keeps its state and
    settings (the filter asked for travels in the signed confirmation link), and
    a pending one only has its time renewed, so its newest link lives its full time.
    Active and paused subscribers get a note instead of a link.
    """
    checked = check(wanted)
    current = store.subscriber(checked.email)
    if current is None:
        try:
            return add(store, checked, "subscriber", now), "confirm"
        except DigestError:  # the same address, posted twice at once
            current = store.subscriber(checked.email)
            if current is None:
                raise
    if current.status == "pending":
        store.update_subscriber(current.id, {"updated_at": iso(now)})
    return current, "known" if current.status in ("active", "paused") else "confirm"


def confirmable(
    store: Store, subscriber_id: int, email: str, requested_at: datetime
) -> Subscriber | None:
    """Who a signed request made at ``requested_at`` may confirm, changing nothing.

    None when the link names nobody who may confirm: an unknown id, another
    address, or an address unsubscribed after the request (a link mailed before
    an unsubscribe never undoes it).  The page behind a confirm link asks this
    before it shows its button; ``confirm`` asks it again before it acts.
    """
    person = store.subscriber_by_id(subscriber_id)
    if person is None or person.email.casefold() != email.casefold():
        return None
    if person.status == "unsubscribed":
        last = store.last_unsubscribe(person.id)
        if iso(requested_at) <= (last.at if last else person.updated_at):
            return None
    return person


def confirm(
    store: Store,
    subscriber_id: int,
    email: str,
    query: str,
    requested_at: datetime,
    now: datetime,
) -> Subscriber | None:
    """Confirm a signed request for (id, address, filter) made at ``requested_at``.

    Returns the subscriber, or None when the link names nobody who may confirm
    (``confirmable``).  An active or paused subscription is left exactly as it
    is (confirming twice is fine, and an old link never changes a live filter).
    """
    person = confirmable(store, subscriber_id, email, requested_at)
    if person is None or person.status in ("active", "paused"):
        return person
    if person.status == "unsubscribed":  # links and feed URLs from before it stay dead
        store.update_subscriber(person.id, {"secret": new_secret()})
    person = change_settings(store, person, {"filter": query}, "subscriber", now)
    return change_status(store, person, "confirm", "subscriber", now)


def new_secret() -> str:
    """A subscriber's link secret (at least 128 bits); a new one revokes every old link."""
    return secrets.token_urlsafe(SECRET_BYTES)


# the config's restore ------------------------------------------------------------------


def retired_by_config(store: Store, person: Subscriber) -> bool:
    """Whether the config itself unsubscribed this person, and they did not confirm it
    with an unsubscribe of their own since (only then may the config restore them)."""
    if person.status != "unsubscribed":
        return False
    last = store.last_unsubscribe(person.id)
    return last is not None and last.channel == "config"


def restore(store: Store, person: Subscriber, now: datetime) -> Subscriber:
    """Undo the config's retire: back to the state it was retired from (a paused or
    bouncing subscriber does not come back active)."""
    next_status(person.status, "restore", "config")
    last = store.last_unsubscribe(person.id)
    was = last.from_status if last is not None else None
    back: Status = "paused" if was == "paused" else "bouncing" if was == "bouncing" else "active"
    with store.write():
        store.update_subscriber(person.id, {"status": back, "updated_at": iso(now)})
        store.add_event(person.id, "restore", "config", person.status, back, at=iso(now))
    return _fresh(store, person)


def _fresh(store: Store, person: Subscriber) -> Subscriber:
    found = store.subscriber_by_id(person.id)
    assert found is not None
    return found


# retention ---------------------------------------------------------------------------------


def expire_pending(store: Store, before: datetime, *, dry_run: bool = False) -> list[Subscriber]:
    """Delete the sign-ups still ``pending`` that were made (and last changed) before
    ``before``: never confirmed, their link long expired (``digest prune``).

    The row goes with its history: it only ever held an address that did not
    confirm, which is not kept.  A sign-up confirmed meanwhile is left alone (the
    status is read again under the write lock); the same address may sign up again.
    """
    cutoff = iso(before)
    stale = [p for p in store.subscribers(["pending"]) if max(p.created_at, p.updated_at) < cutoff]
    if dry_run or not stale:
        return stale
    gone = []
    with store.write():
        for person in stale:
            current = store.subscriber_by_id(person.id)
            if current is not None and current.status == "pending":
                store.delete_subscriber(person.id)
                gone.append(person)
    return gone
