"""``digest subscribers ...``: add, list, show, change, remove, import, export, sync."""

from pathlib import Path
from typing import Any

import click

from digest import subscribers
from digest.cli.app import App, emit_json, errors, now
from digest.errors import UsageError
from digest.lifecycle import OPERATOR_SETS
from digest.links import links_for
from digest.models import FORMATS, FREQUENCIES, STATUSES, Subscriber

FREQUENCY = click.Choice(FREQUENCIES)
FORMAT = click.Choice(FORMATS)
STATUS = click.Choice(STATUSES)
SETTABLE_STATUS = click.Choice(list(OPERATOR_SETS))


@click.group("subscribers")
def subscribers_group() -> None:
    """Add, list, change and remove subscribers (also: CSV import and export)."""


def _print_subscriber(subscriber: Subscriber, as_json: bool) -> None:
    if as_json:
        emit_json(subscriber.as_json())
        return
    s = subscriber
    click.echo(
        f"{s.email}  {s.status}  {s.frequency}/{s.format}  {s.name or '-'}\n  filter: {s.filter}"
    )


@subscribers_group.command("add")
@click.argument("email")
@click.option("--filter", "query", required=True, metavar="QUERY", help="What they want to read.")
@click.option("--name", default="", help="Display name, used in the To: header.")
@click.option("--frequency", type=FREQUENCY, default="daily", show_default=True)
@click.option("--format", "fmt", type=FORMAT, default="html", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the new subscriber as JSON.")
@click.pass_obj
def subscribers_add(
    app: App, email: str, query: str, name: str, frequency: str, fmt: str, as_json: bool
) -> None:
    """Add an active subscriber with a filter query."""
    with errors(app):
        from digest import lifecycle

        wanted = subscribers.Wanted(email, query, name, frequency, fmt)
        _print_subscriber(lifecycle.add(app.store, wanted, "operator", now()), as_json)


@subscribers_group.command("list")
@click.option("--status", "statuses", type=STATUS, multiple=True, help="Only these (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def subscribers_list(app: App, statuses: tuple[str, ...], as_json: bool) -> None:
    """List subscribers."""
    with errors(app):
        found = app.store.subscribers(statuses or None)
    if as_json:
        emit_json([s.as_json() for s in found])
        return
    for s in found:
        click.echo(f"{s.email:<32} {s.status:<12} {s.frequency:<6} {s.format:<4}  {s.filter}")
    click.echo(f"{len(found)} subscribers", err=True)


@subscribers_group.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def subscribers_show(app: App, email: str, as_json: bool) -> None:
    """Show one subscriber, with their feed, manage and unsubscribe links."""
    with errors(app):
        subscriber = subscribers.get(app.store, email)
    urls = links_for(subscriber, app.config.web.base_url)
    found = {
        "feed_url": urls.feed_atom,
        "manage_url": urls.manage,
        "unsubscribe_url": urls.unsubscribe,
    }
    with errors(app):
        history = app.store.events(subscriber.id)
    if as_json:
        emit_json(subscriber.as_json() | found | {"history": history})
        return
    _print_subscriber(subscriber, as_json=False)
    click.echo(f"  settings owned by: {subscriber.settings_owner}")
    for key, url in found.items():
        click.echo(f"  {key.removesuffix('_url')}: {url}")
    click.echo("  history:" if history else "  history: none recorded")
    for event in history:
        click.echo(f"    {_event_line(event)}")


def _event_line(event: dict[str, Any]) -> str:
    """``2026-11-24 07:00  unsubscribe by subscriber: active -> unsubscribed  (detail)``."""
    when = f"{event['at'][:10]} {event['at'][11:16]}"
    moved = event["to_status"]
    if event["from_status"] not in (None, moved):
        moved = f"{event['from_status']} -> {moved}"
    detail = f"  ({event['detail']})" if event["detail"] else ""
    return f"{when}  {event['action']} by {event['channel']}: {moved}{detail}"


@subscribers_group.command("set")
@click.argument("email")
@click.option("--filter", "query", metavar="QUERY", help="A new filter query.")
@click.option("--name", help="A new display name.")
@click.option("--frequency", type=FREQUENCY)
@click.option("--format", "fmt", type=FORMAT)
@click.option(
    "--status",
    type=SETTABLE_STATUS,
    help="Pause, resume or unsubscribe (an unsubscribed address comes back only by itself).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def subscribers_set(
    app: App,
    email: str,
    query: str | None,
    name: str | None,
    frequency: str | None,
    fmt: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """Change a subscriber's filter, name, frequency, format or status."""
    given = {"filter": query, "name": name, "frequency": frequency, "format": fmt, "status": status}
    changes = {k: v for k, v in given.items() if v is not None}
    with errors(app):
        if not changes:
            raise UsageError(
                "nothing to change: give --filter, --name, --frequency, --format or --status"
            )
        from digest import lifecycle

        _print_subscriber(lifecycle.set_by_operator(app.store, email, changes, now()), as_json)


@subscribers_group.command("remove")
@click.argument("email")
@click.option(
    "--purge", is_flag=True, help="Delete everything about them instead of keeping history."
)
@click.pass_obj
def subscribers_remove(app: App, email: str, purge: bool) -> None:
    """Unsubscribe someone (history kept), or --purge to delete them entirely."""
    with errors(app):
        from digest import lifecycle

        declared = [subscribers.normalize_email(t.email) for t in app.config.subscribers]
        gone = lifecycle.remove(app.store, email, now(), purge=purge, declared=declared)
    click.echo(f"{gone.email}: {'purged' if purge else 'unsubscribed'}")


@subscribers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the imported subscribers as JSON.")
@click.pass_obj
def subscribers_import(app: App, file: Path, as_json: bool) -> None:
    """Import a CSV with header email,filter[,name,frequency,format]: every row or none."""
    with errors(app):
        from digest import lifecycle

        added = lifecycle.add_many(app.store, subscribers.checked_csv(app.store, file), now())
    if as_json:
        emit_json([s.as_json() for s in added])
    else:
        click.echo(f"imported {len(added)} subscribers from {file}")


@subscribers_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.pass_obj
def subscribers_export(app: App, file: Path | None) -> None:
    """Write every subscriber as CSV (the import format) to FILE or standard output."""
    with errors(app):
        text = subscribers.export_csv(app.store.subscribers())
    if file is None:
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"exported to {file}", err=True)


@subscribers_group.command("sync")
@click.option("--dry-run", is_flag=True, help="Say what would change, and change nothing.")
@click.pass_obj
def subscribers_sync(app: App, dry_run: bool) -> None:
    """Bring the config's [[subscribers]] into the database now.

    Adds the declared ones, updates the settings the config owns, and
    unsubscribes those no longer declared. Never brings back anyone who
    unsubscribed, and never reverts what subscribers changed themselves.
    The service does this at start and on SIGHUP.
    """
    with errors(app):
        steps = app.sync_subscribers(dry_run=dry_run)
    for step in steps:
        click.echo(str(step))
    verb = "would change" if dry_run else "changed"
    changed = sum(1 for s in steps if not s.what.startswith("keep"))
    click.echo(f"{verb} {changed} subscribers", err=True)
