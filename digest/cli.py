"""The ``digest`` command: parse arguments, call one core function, print the result.

Modules that pull in heavy libraries (mail, templates, feeds, the scheduler,
the web stack) are imported inside the commands that use them, so that
``digest ingest`` and the other quick commands start fast.

No SQL, SMTP or template code here.  Errors from the core (``DigestError``)
are printed on one line without a traceback (``-v`` shows it) and set the
exit status: 2 for usage and config errors, 1 otherwise.
"""

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from digest import config as config_module
from digest import ingest as ingest_module
from digest import match, subscribers
from digest.config import Config
from digest.errors import DigestError, UsageError
from digest.links import links_for
from digest.models import STATUSES, IngestReport, Subscriber
from digest.store import Store, iso

if TYPE_CHECKING:
    from digest import lifecycle
    from digest.mailer import Transport
    from digest.outbox import SendReport
    from digest.retention import PruneReport
    from digest.store import OutboxRow


@dataclass
class App:
    """Per-invocation state: the config file named, verbosity, and what was opened lazily."""

    config_path: Path | None
    verbose: int
    level_given: bool = False
    quiet: bool = False
    _config: Config | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = config_module.load(self.config_path)
        return self._config

    @property
    def store(self) -> Store:
        """The existing database, opened on first use; opening it writes nothing.

        Only ``run``, ``ingest`` and ``migrate`` create or migrate it (``writable_store``).
        """
        if self._store is None:
            database = self.config.storage.database
            self._store = Store(database, create=False, named_by=self._named_by())
        return self._store

    @property
    def writable_store(self) -> Store:
        """The database, created and migrated as needed."""
        if self._store is None:
            self._store = Store(self.config.storage.database)
        return self._store

    def _named_by(self) -> str:
        source = self.config.source
        return f"[storage] database in {source}" if source else "built-in default, no config file"

    def sync_subscribers(self, *, dry_run: bool = False) -> "list[lifecycle.SyncStep]":
        """The config's ``[[subscribers]]`` into the database (skipped without a config file)."""
        from digest import lifecycle

        return lifecycle.sync_declared(self.store, self.config, now(), dry_run=dry_run)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def now() -> datetime:
    return datetime.now(UTC)


def _fail(err: DigestError, verbose: int) -> NoReturn:
    if verbose:
        logging.getLogger("digest").exception("traceback")
    click.echo(f"error: {err}", err=True)
    sys.exit(err.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file. Default: $DIGEST_CONFIG, else ./config.toml if present, else built-in "
    "defaults with data under ./var/.",
)
@click.option("-v", "--verbose", count=True, help="More detail (and tracebacks on errors).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(package_name="digest", message="digest %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool) -> None:
    """Trending research papers, filtered per subscriber, by email and Atom/RSS.

    Dumps (text copies of a trending-papers listing) are ingested into a SQLite
    store; each subscriber's keyword filter picks their papers.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    stamp = "" if under_journal else "%(asctime)s "
    logging.basicConfig(
        level=level, format=f"{stamp}%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    app = App(config_path, verbose, level_given=quiet or bool(verbose), quiet=quiet)
    ctx.obj = app
    ctx.call_on_close(app.close)


@contextmanager
def _errors(app: App) -> Iterator[None]:
    try:
        yield
    except DigestError as err:
        _fail(err, app.verbose)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# ingest ----------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--inbox", is_flag=True, help="Take every file in the configured inbox folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def ingest(app: App, paths: tuple[Path, ...], inbox: bool, as_json: bool) -> None:
    """Ingest dump files (and the files inside folders) into the store.

    Each file is stored whole or not at all; the same content twice is
    recognised and adds nothing. With --inbox, handled files move to
    processed/ or, when rejected, to failed/ with the error beside them; a
    file still being written (changed less than [inbox] settle_seconds ago)
    is waited for that long at most, then left for the next run.

    Exit status: 0 when every file was fine, 1 when any was rejected,
    2 for usage or config errors.
    """
    with _errors(app):
        if inbox == bool(paths):
            raise UsageError("give PATH... or --inbox (one of the two)")
        settle = app.config.inbox.settle_seconds
        if inbox:
            ingest_module.wait_until_settled(app.config.inbox.dir, settle, now, time.sleep)
        files = (
            ingest_module.inbox_files(app.config.inbox.dir)
            if inbox
            else ingest_module.collect(list(paths))
        )
        with _progress(files, enabled=not as_json) as progress:
            if inbox:
                report = ingest_module.ingest_inbox(
                    app.writable_store, app.config.inbox.dir, now(), progress, settle_seconds=settle
                )
            else:
                report = ingest_module.ingest_files(app.writable_store, files, now(), progress)
    if as_json:
        files_json = [f.as_json() for f in report.files]
        _emit_json({"files": files_json, "waiting": report.waiting, "error": report.error})
    else:
        _print_ingest(report, quiet=app.quiet)
    sys.exit(1 if report.rejected or report.error else 0)


@contextmanager
def _progress(files: list[Path], *, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A byte-counting progress bar on a terminal, nothing otherwise."""
    total = sum(p.stat().st_size for p in files if p.exists())
    if not enabled or not sys.stderr.isatty() or total < 1 << 20:
        yield None
        return
    with click.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:
        yield bar.update


def _print_ingest(report: IngestReport, *, quiet: bool) -> None:
    """A line per file and a summary; with ``-q`` only the rejected files."""
    for f in report.files:
        if f.status == "rejected":
            click.echo(f"rejected   {f.path}\n           {f.error}", err=True)
        elif quiet:
            continue
        else:
            click.echo(f"{f.status:<10} {f.path}: {f.entries} entries, {f.new} new, {f.seen} seen")
        if f.moved_to:
            click.echo(f"           moved to {f.moved_to}")
    for path in report.waiting:
        click.echo(f"waiting    {path}: still being written; left in the inbox")
    if report.error:
        click.echo(f"error: {report.error}", err=True)
    if quiet:
        return
    ingested = sum(1 for f in report.files if f.status == "ingested")
    click.echo(
        f"{len(report.files)} files: {ingested} ingested, "
        f"{len(report.files) - ingested - report.rejected} duplicate, {report.rejected} rejected; "
        f"{report.new_papers} new papers"
    )


# papers ----------------------------------------------------------------------


MAX_SINCE_DAYS = 36_500  # a century: anything further is a typo, and overflows a date


def parse_since(value: str | None, moment: datetime) -> datetime | None:
    """``7d`` (days ago), ``2026-11-24`` or a full ISO timestamp, as an aware UTC datetime."""
    if value is None:
        return None
    text = value.strip()
    if text.endswith("d") and text[:-1].isdigit():
        days = int(text[:-1])
        if days > MAX_SINCE_DAYS:
            raise UsageError(
                f"--since {value!r}: at most {MAX_SINCE_DAYS}d", "or give a date: 2016-01-31"
            )
        return moment - timedelta(days=days)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {value!r}: not a date", "use 7d, 2026-11-24 or 2026-11-24T08:00:00Z"
        ) from None
    moment_given = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        iso(moment_given)
    except (OverflowError, ValueError):
        raise UsageError(f"--since {value!r}: out of range", "use a date after 1970") from None
    return moment_given


@cli.command()
@click.option(
    "--since", metavar="WHEN", help="Only papers first seen since then: 7d, 2026-11-24, …"
)
@click.option("--search", "query", metavar="QUERY", help="Only papers matching this filter query.")
@click.option("--limit", type=click.IntRange(min=1, max=1_000_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def papers(app: App, since: str | None, query: str | None, limit: int, as_json: bool) -> None:
    """List stored papers, newest first, with how often they trended."""
    with _errors(app):
        rows = match.search(app.store, query, since=parse_since(since, now()), limit=limit)
    if as_json:
        _emit_json([row.as_json() for row in rows])
        return
    for row in rows:
        click.echo(f"{row.id}  {row.first_seen[:10]}  seen {row.times_seen}×  {row.title}")
    if not rows:
        click.echo("no papers", err=True)


# status ----------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Counts, last ingest, the outbox, the last delivery run, database path and size.

    The outbox: digests queued, deferred (with the next attempt), failed in the
    last 7 days, and subscribers bouncing; the last delivery run is the newest
    `digest send`, `run --once` or scheduled delivery, with its counts.
    """
    with _errors(app):
        from digest import queue

        info = app.store.status() | queue.status(app.store, now())
    if as_json:
        _emit_json(info)
        return
    last = info["last_ingest"]
    click.echo(f"database     {info['database']} ({info['database_bytes'] / 1e6:.1f} MB)")
    click.echo(f"papers       {info['papers']}")
    click.echo(f"dumps        {info['dumps']} ({info['rejections']} rejected files)")
    click.echo(f"subscribers  {info['subscribers']} ({info['bouncing']} bouncing)")
    click.echo(f"last ingest  {last['at'] + '  ' + last['file'] if last else 'never'}")
    _print_outbox_status(info["outbox"], info["last_delivery"])


def _print_outbox_status(box: dict[str, Any], run: dict[str, Any] | None) -> None:
    deferred = f"{box['deferred']} deferred"
    if box["next_attempt_at"]:
        deferred += f" (next attempt {box['next_attempt_at']})"
    sending = f", {box['sending']} sending" if box["sending"] else ""
    click.echo(
        f"outbox       {box['queued']} queued, {deferred}{sending}, "
        f"{box['failed_last_7_days']} failed in the last 7 days"
    )
    if run is None:
        click.echo("last send    never")
        return
    ended = run["finished_at"] or "unfinished"
    click.echo(f"last send    {run['started_at']} ({run['job']}, ended {ended}): {run['summary']}")


# subscribers -----------------------------------------------------------------

FREQUENCY = click.Choice(["daily", "weekly"])
FORMAT = click.Choice(["html", "text"])
STATUS = click.Choice(STATUSES)
SETTABLE_STATUS = click.Choice(["active", "paused", "unsubscribed"])


@cli.group("subscribers")
def subscribers_group() -> None:
    """Add, list, change and remove subscribers (also: CSV import and export)."""


def _print_subscriber(subscriber: Subscriber, as_json: bool) -> None:
    if as_json:
        _emit_json(subscriber.as_json())
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
    with _errors(app):
        from digest import lifecycle

        wanted = subscribers.Wanted(email, query, name, frequency, fmt)
        _print_subscriber(lifecycle.add(app.store, wanted, "operator", now()), as_json)


@subscribers_group.command("list")
@click.option("--status", "statuses", type=STATUS, multiple=True, help="Only these (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def subscribers_list(app: App, statuses: tuple[str, ...], as_json: bool) -> None:
    """List subscribers."""
    with _errors(app):
        found = app.store.subscribers(statuses or None)
    if as_json:
        _emit_json([s.as_json() for s in found])
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
    with _errors(app):
        subscriber = subscribers.get(app.store, email)
    urls = links_for(subscriber, app.config.web.base_url)
    found = {
        "feed_url": urls.feed_atom,
        "manage_url": urls.manage,
        "unsubscribe_url": urls.unsubscribe,
    }
    with _errors(app):
        history = app.store.events(subscriber.id)
    if as_json:
        _emit_json(subscriber.as_json() | found | {"history": history})
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
    with _errors(app):
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
    with _errors(app):
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
    with _errors(app):
        from digest import lifecycle

        added = lifecycle.add_many(app.store, subscribers.checked_csv(app.store, file), now())
    if as_json:
        _emit_json([s.as_json() for s in added])
    else:
        click.echo(f"imported {len(added)} subscribers from {file}")


@subscribers_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.pass_obj
def subscribers_export(app: App, file: Path | None) -> None:
    """Write every subscriber as CSV (the import format) to FILE or standard output."""
    with _errors(app):
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
    with _errors(app):
        steps = app.sync_subscribers(dry_run=dry_run)
    for step in steps:
        click.echo(str(step))
    verb = "would change" if dry_run else "changed"
    changed = sum(1 for s in steps if not s.what.startswith("keep"))
    click.echo(f"{verb} {changed} subscribers", err=True)


# match and explain ---------------------------------------------------------------


@cli.command("match")
@click.option("--query", metavar="QUERY", help="Backtest this filter over the stored papers.")
@click.option("--subscriber", "email", metavar="EMAIL", help="Show this subscriber's next digest.")
@click.option("--since", metavar="WHEN", help="With --query: only papers first seen since then.")
@click.option("--by-day", is_flag=True, help="With --query: papers per ingest day instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def match_command(
    app: App, query: str | None, email: str | None, since: str | None, by_day: bool, as_json: bool
) -> None:
    """Run a filter over the stored papers, or show what a subscriber would get next.

    Order: trending first (seen in more listings, at better positions), then
    relevance. JSON: an array of {id, title, matched, score, ...}.
    """
    with _errors(app):
        if (query is None) == (email is None):
            raise UsageError("give --query QUERY or --subscriber EMAIL (one of the two)")
        if query is not None:
            found = match.backtest(app.store, query, since=parse_since(since, now()))
            if by_day:
                _print_by_day(match.by_day([m.paper for m in found]), as_json)
                return
            _print_matches(found, as_json)
            return
        assert email is not None
        subscriber = subscribers.get(app.store, email)
        upcoming = match.pending(app.store, subscriber, app.config.digest, now())
    _print_matches(upcoming.capped, as_json)
    if not as_json:
        click.echo(
            f"window: {upcoming.window}; {upcoming.more} more match beyond the cap", err=True
        )


def _print_matches(found: list[match.Match], as_json: bool) -> None:
    if as_json:
        _emit_json([m.as_json() for m in found])
        return
    for m in found:
        click.echo(f"{m.paper.id}  seen {m.paper.times_seen}×  {m.paper.title}")
        click.echo(f"    matched: {', '.join(m.matched)}")
    click.echo(f"{len(found)} papers", err=True)


def _print_by_day(days: list[tuple[str, int]], as_json: bool) -> None:
    if as_json:
        _emit_json([{"day": day, "papers": count} for day, count in days])
        return
    for day, count in days:
        click.echo(f"{day}  {count:>4}  {'#' * min(count, 60)}")


@cli.command("explain")
@click.argument("email")
@click.argument("paper")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def explain_command(app: App, email: str, paper: str, as_json: bool) -> None:
    """Say why PAPER (id or title) is or is not in EMAIL's next digest."""
    with _errors(app):
        subscriber = subscribers.get(app.store, email)
        found = app.store.paper(paper)
        if found is None:
            raise UsageError(f"no paper with id or title {paper!r}", "see `digest papers --search`")
        verdict = match.explain(app.store, subscriber, found, app.config.digest, now())
    if as_json:
        why = verdict.explanation
        _emit_json(
            {
                "included": verdict.included,
                "reasons": verdict.reasons,
                "matched": why.matched,
                "missing": why.missing,
                "excluded_by": why.excluded_by,
            }
        )
        return
    head = "IN" if verdict.included else "NOT in"
    click.echo(f"{found.title}\n{head} the next digest of {subscriber.email}:")
    for reason in verdict.reasons:
        click.echo(f"  - {reason}")


# email -------------------------------------------------------------------------------


@cli.command("preview")
@click.argument("email")
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.pass_obj
def preview_command(app: App, email: str, as_text: bool) -> None:
    """Print the digest EMAIL would get now (HTML by default); records and sends nothing."""
    with _errors(app):
        subscriber = subscribers.get(app.store, email)
        from digest import outbox
        from digest.render import Renderer

        renderer = Renderer(app.config)
        built = outbox.preview(app.store, app.config, renderer, subscriber, now())
        body = renderer.text(built.content) if as_text else renderer.html(built.content)
    click.echo(body)


@cli.command("send")
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
    with _errors(app):
        if email is not None:
            subscribers.get(app.store, email)
        from digest import mailer, queue

        transport = mailer.transport_for(app.config.delivery, app.config.smtp)
        report = _recorded_send(app, transport, email, dry_run)
    if as_json:
        _emit_json(report.as_json())
    else:
        _print_send(report)
        _point_at_newest(app.config)
    if report.error:
        click.echo(f"error: {report.error}", err=True)
    sys.exit(queue.exit_status(report, dry_run=dry_run))


def _recorded_send(
    app: App, transport: "Transport", email: str | None, dry_run: bool
) -> "SendReport":
    """``outbox.send``, recorded as a ``send`` job run (shown by ``digest status``)."""
    from digest import outbox, queue
    from digest.store import iso

    store = app.store
    if dry_run:
        return outbox.send(store, app.config, transport, now, only=email, dry_run=True)
    run_id = store.start_run("send", iso(now()), iso(now()))
    report = outbox.send(store, app.config, transport, now, only=email)
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


def _point_at_newest(config: Config) -> None:
    """With the Maildir backend, say which file shows the newest digest in a browser."""
    if config.delivery.backend != "maildir":
        return
    target = config.delivery.maildir / "latest.html"
    from digest.maildir_view import latest_html

    if latest_html(config.delivery.maildir, target):
        click.echo(f"newest digest: open file://{target}")


# outbox and retention ------------------------------------------------------------------

OUTBOX_STATUS = click.Choice(["queued", "sending", "deferred", "sent", "failed"])


@cli.group("outbox")
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
    with _errors(app):
        from digest import queue

        rows = queue.listing(app.store, statuses or None, limit)
    if as_json:
        _emit_json([row.as_json() for row in rows])
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
    with _errors(app):
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
        _emit_json(report.as_json())
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


@cli.command("prune")
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
    with _errors(app):
        from digest import retention

        report = retention.prune(app.store, app.config, now(), dry_run=dry_run)
    if as_json:
        _emit_json(report.as_json())
        return
    _print_prune(report)


def _print_prune(report: "PruneReport") -> None:
    verb = "would remove" if report.dry_run else "removed"
    for rule, pruned in report.rules:
        size = f" ({pruned.bytes / 1e3:.1f} kB)" if pruned.bytes else ""
        click.echo(f"{verb} {pruned.rows:>6}  {rule}{size}")


# the service ---------------------------------------------------------------------


@cli.command("run")
@click.option(
    "--once",
    is_flag=True,
    help="One cycle (ingest the inbox, deliver what is due, build feeds, prune), then exit.",
)
@click.pass_obj
def run_command(app: App, once: bool) -> None:
    """Run the service: poll the inbox, deliver on schedule, rebuild the feeds, prune daily.

    Logs one line per event to standard error. SIGTERM/SIGINT stop it after
    the work in hand, SIGHUP reloads the config. Under systemd it uses the
    notify protocol (READY, STOPPING, WATCHDOG). One instance per database.
    With --once the exit status is that of `digest send` (0, 75, 1), and 1
    when a dump was rejected.
    """
    with _errors(app):
        if not app.level_given:
            logging.getLogger().setLevel(app.config.log.level.upper())
        app.writable_store  # noqa: B018  (creates and migrates the database before any job)
        app.sync_subscribers()
        if once:
            from digest import pipeline

            report = pipeline.run_once(app.config, lambda: datetime.now(app.config.schedule.zone))
            _point_at_newest(app.config)
            sys.exit(report.exit_status)
        from digest.scheduler import Service

        sys.exit(Service(app.config, app.config_path).run())


@cli.command("serve")
@click.option("--host", help="Address to listen on (default [web] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default [web] port).")
@click.pass_obj
def serve_command(app: App, host: str | None, port: int | None) -> None:
    """Serve the web front: subscribe, confirm, manage, unsubscribe, feeds, /healthz.

    Needs the signing key in the variable named by [web] secret_env, except on
    a loopback address, where a key is generated once per database.
    """
    from digest import web  # the web stack loads only for this command

    with _errors(app):
        app.sync_subscribers()
        web.serve(app.config, host, port)


@cli.command("migrate")
@click.pass_obj
def migrate_command(app: App) -> None:
    """Create the database, or bring its schema up to this version of digest.

    `digest run` and `digest ingest` do this too; every other command needs an
    existing, migrated database and never creates one.
    """
    with _errors(app):
        store = app.writable_store
    click.echo(f"database {store.path} is ready")


@cli.group("feeds")
def feeds_group() -> None:
    """Atom and RSS feeds: public, per topic and per subscriber."""


@feeds_group.command("build")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {path, entries}.")
@click.pass_obj
def feeds_build(app: App, as_json: bool) -> None:
    """Write the public feeds (and private ones when [feeds] private_static) into [feeds] dir."""
    with _errors(app):
        from digest.feeds import build_all

        written = build_all(app.store, app.config)
    if as_json:
        _emit_json([{"path": str(path), "entries": entries} for path, entries in written])
        return
    for path, entries in written:
        click.echo(f"{path}  {entries} entries")


def main() -> None:
    cli(prog_name="digest")
