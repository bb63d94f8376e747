"""``digest preview``, ``send``, ``outbox ...``, ``prune``: digests, their delivery, upkeep."""

import sys
from typing import TYPE_CHECKING

import click

from digest import subscribers
from digest.cli.app import App, emit_json, errors, now, parse_since
from digest.config import Config

if TYPE_CHECKING:
    from digest.mailer import Transport
    from digest.outbox import SendReport
    from digest.retention import PruneReport
    from digest.store import OutboxRow


@click.command("preview")
@click.argument("email")
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.pass_obj
def preview_command(app: App, email: str, as_text: bool) -> None:
    """Print the digest EMAIL would get now (HTML by default); records and sends nothing."""
    with errors(app):
        subscriber = subscribers.get(app.store, email)
        from digest import outbox
        from digest.render import Renderer

        renderer = Renderer(app.config)
        built = outbox.preview(app.store, app.config, renderer, subscriber, now())
        body = renderer.text(built.content) if as_text else renderer.html(built.content)
    click.echo(body)


@click.command("send")
@click.option("--dry-run", is_flag=True, help="Render and report, but record and send nothing.")
@click.option("--only", "email", metavar="EMAIL", help="Only this subscriber.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def send_command(app: App, dry_run: bool, email: str | None, as_json: bool) -> None:
    """Build the digest of every subscriber that is due, then deliver what is ready.

    Daily subscribers are due when their last digest is 20 hours old, weekly
    ones on [digest] weekly_day. Delivery goes through [delivery] backend.
    Ready digests left by earlier runs go out too; what is still queued or
    deferred afterwards is reported ("waiting in the outbox").

    \b
    Exit status:
      0   every digest went out and nothing waits in the outbox
      75  nothing failed, but digests wait for a retry (EX_TEMPFAIL): deferred
          by the relay, or all left queued because the mail server could not
          be used (the error line says why); the next run sends them
      1   a digest failed (each is listed with its reason; the others went on)
      2   usage or config errors
    """
    with errors(app):
        if email is not None:
            subscribers.get(app.store, email)
        from digest import mailer, queue

        transport = mailer.transport_for(app.config.delivery, app.config.smtp)
        report = _recorded_send(app, transport, email, dry_run)
    if as_json:
        emit_json(report.as_json())
    else:
        _print_send(report)
        point_at_newest(app.config)
    if report.error:
        click.echo(f"error: {report.error}", err=True)
    sys.exit(queue.exit_status(report, dry_run=dry_run))


def _recorded_send(
    app: App, transport: "Transport", email: str | None, dry_run: bool
) -> "SendReport":
    """``sending.send``, recorded as a ``send`` job run (shown by ``digest status``)."""
    from digest import queue, sending
    from digest.store import iso

    store = app.store
    if dry_run:
        return sending.send(store, app.config, transport, now, only=email, dry_run=True)
    run_id = store.start_run("send", iso(now()), iso(now()))
    report = sending.send(store, app.config, transport, now, only=email)
    store.finish_run(run_id, iso(now()), queue.summary(report))
    return report


def _print_send(report: "SendReport") -> None:
    for d in report.digests:
        line = f"{d.status:<9} {d.email}: {d.papers} papers"
        click.echo(
            line + (f" ({d.error})" if d.error else ""), err=d.status in ("failed", "deferred")
        )
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("sent", "deferred", "failed", "skipped"))
    click.echo(f"{counts}; {report.not_due} subscribers not due yet")
    from digest.queue import waiting_line

    if (waiting := waiting_line(report)) is not None:
        click.echo(waiting)


def point_at_newest(config: Config) -> None:
    """With the Maildir backend, say which file shows the newest digest in a browser."""
    if config.delivery.backend != "maildir":
        return
    target = config.delivery.maildir / "latest.html"
    from digest.maildir_view import latest_html

    if latest_html(config.delivery.maildir, target):
        click.echo(f"newest digest: open file://{target}")


# outbox and retention ------------------------------------------------------------------

OUTBOX_STATUS = click.Choice(["queued", "sending", "deferred", "sent", "failed"])


@click.group("outbox")
def outbox_group() -> None:
    """See the digests waiting or failed, and retry them after a relay problem."""


@outbox_group.command("list")
@click.option(
    "--status", "statuses", type=OUTBOX_STATUS, multiple=True, help="Only these (repeatable)."
)
@click.option("--limit", type=click.IntRange(min=1, max=1_000_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def outbox_list(app: App, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List digests, newest first: status, attempts, next attempt and last error.

    Without --status: every status. "retryable" means the message is still
    kept, so `digest outbox retry --failed` can send it again.
    """
    with errors(app):
        from digest import queue

        rows = queue.listing(app.store, statuses or None, limit)
    if as_json:
        emit_json([row.as_json() for row in rows])
        return
    for row in rows:
        click.echo(_outbox_line(row))
    click.echo(f"{len(rows)} digests", err=True)


def _outbox_line(row: "OutboxRow") -> str:
    when = f" next {row.next_attempt_at}" if row.status == "deferred" else ""
    kept = "" if row.has_message else " (no message)"
    error = f"\n    {row.error}" if row.error else ""
    return (
        f"{row.created_at}  {row.status:<8} {row.email}  {row.papers} papers, "
        f"{row.attempts} attempts{when}{kept}  {row.message_id}{error}"
    )


@outbox_group.command("retry")
@click.option("--failed", "include_failed", is_flag=True, help="Also requeue failed digests.")
@click.option("--since", metavar="WHEN", help="Only digests built since then: 2d, 2026-11-24, …")
@click.option("--only", "email", metavar="EMAIL", help="Only this subscriber's digests.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def outbox_retry(
    app: App, include_failed: bool, since: str | None, email: str | None, as_json: bool
) -> None:
    """Put digests back in the outbox after a relay problem; the next send delivers them.

    Deferred digests become due now. With --failed, failed digests that still
    hold their message (kept [storage] keep_failed_days days) are queued again.
    Each keeps its bytes and Message-ID. A digest whose subscriber is not
    active (paused, unsubscribed, bouncing) is left alone: resume them first
    (`digest subscribers set EMAIL --status active`). Sends nothing itself:
    run `digest send`, or let the service deliver at its next run.
    """
    with errors(app):
        from digest import queue

        person = subscribers.get(app.store, email) if email else None
        report = queue.retry(
            app.store,
            now(),
            failed=include_failed,
            since=parse_since(since, now()),
            subscriber_id=person.id if person else None,
        )
    if as_json:
        emit_json(report.as_json())
        return
    for row in report.due:
        click.echo(f"due now   {row.email}  {row.message_id}")
    for row in report.requeued:
        click.echo(f"requeued  {row.email}  {row.message_id}")
    for row, why in report.left:
        click.echo(f"left      {row.email}  {row.message_id} ({row.status}: {why})", err=True)
    click.echo(
        f"{len(report.due)} due now, {len(report.requeued)} requeued, {len(report.left)} left; "
        "`digest send` delivers them"
    )


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def prune_command(app: App, dry_run: bool, as_json: bool) -> None:
    """Remove what grows without bound and nobody reads (the service does it daily).

    Job runs and rejected-dump records older than [storage] keep_days; the
    message bytes of sent digests and of failed ones older than [storage]
    keep_failed_days; sign-ups never confirmed within [web] confirm_hours
    plus 24 hours. Digests and their deliveries (which papers each subscriber
    was sent) are kept. The service runs it at [storage] prune_at.
    """
    with errors(app):
        from digest import retention

        report = retention.prune(app.store, app.config, now(), dry_run=dry_run)
    if as_json:
        emit_json(report.as_json())
        return
    _print_prune(report)


def _print_prune(report: "PruneReport") -> None:
    verb = "would remove" if report.dry_run else "removed"
    for rule, pruned in report.rules:
        size = f" ({pruned.bytes / 1e3:.1f} kB)" if pruned.bytes else ""
        click.echo(f"{verb} {pruned.rows:>6}  {rule}{size}")
