"""``digest ingest``, ``papers``, ``status`` and ``migrate``: the store and what is in it."""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.cli.app import App, echo_byline, emit_json, errors, now, parse_since
from digest.errors import UsageError

if TYPE_CHECKING:
    from digest.models import IngestReport


@click.command("ingest")
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
    from digest import ingest as ingest_module

    with errors(app):
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
        emit_json({"files": files_json, "waiting": report.waiting, "error": report.error})
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


def _print_ingest(report: "IngestReport", *, quiet: bool) -> None:
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


@click.command("papers")
@click.option(
    "--since", metavar="WHEN", help="Only papers first seen since then: 7d, 2026-11-24, …"
)
@click.option("--search", "query", metavar="QUERY", help="Only papers matching this filter query.")
@click.option("--limit", type=click.IntRange(min=1, max=1_000_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def papers(app: App, since: str | None, query: str | None, limit: int, as_json: bool) -> None:
    """List stored papers, newest first, with how often they trended."""
    from digest import backtest

    with errors(app):
        rows = backtest.search(app.store, query, since=parse_since(since, now()), limit=limit)
    if as_json:
        emit_json([row.as_json() for row in rows])
        return
    for row in rows:
        click.echo(f"{row.id}  {row.first_seen[:10]}  seen {row.times_seen}×  {row.title}")
        echo_byline(row.meta.authors)
    if not rows:
        click.echo("no papers", err=True)


# status ----------------------------------------------------------------------


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Counts, last ingest, the outbox, the last delivery run, database path and size.

    The outbox: digests queued, deferred (with the next attempt), failed in the
    last 7 days, and subscribers bouncing; the last delivery run is the newest
    `digest send`, `run --once` or scheduled delivery, with its counts.
    """
    with errors(app):
        from digest import queue

        info = app.store.status() | queue.status(app.store, now())
        info["sources"] = [
            app.store.source_state(s.name).as_json() | {"kind": s.kind, "enabled": s.enabled}
            for s in app.config.sources
        ]
    if as_json:
        emit_json(info)
        return
    last = info["last_ingest"]
    click.echo(f"database     {info['database']} ({info['database_bytes'] / 1e6:.1f} MB)")
    click.echo(f"papers       {info['papers']}")
    click.echo(f"dumps        {info['dumps']} ({info['rejections']} rejected files)")
    click.echo(f"subscribers  {info['subscribers']} ({info['bouncing']} bouncing)")
    click.echo(f"last ingest  {last['at'] + '  ' + last['file'] if last else 'never'}")
    _print_outbox_status(info["outbox"], info["last_delivery"])
    for source in info["sources"]:
        click.echo(f"source       {_source_line(source)}")


def _source_line(state: dict[str, Any]) -> str:
    """``hf: ok at …`` or ``hf: failing (3 times) since …: reason; next attempt …``."""
    name, success = state["name"], state["last_success"]
    if not state["enabled"]:
        return f"{name}: disabled (enabled = false in the config)"
    if not state["failures"]:
        return f"{name}: ok, last fetched {success}" if success else f"{name}: never fetched"
    since = f"last success {success}" if success else "never succeeded"
    return (
        f"{name}: failing ({state['failures']}×, {since}): {state['last_error']}; "
        f"next attempt {state['next_attempt']}"
    )


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


@click.command("migrate")
@click.pass_obj
def migrate_command(app: App) -> None:
    """Create the database, or bring its schema up to this version of digest.

    `digest run` and `digest ingest` do this too; every other command needs an
    existing, migrated database and never creates one.
    """
    with errors(app):
        store = app.writable_store
    click.echo(f"database {store.path} is ready")
