"""``digest fetch``: ask the configured ``[[sources]]`` for their papers, now."""

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from digest.cli.app import App, emit_json, errors, now
from digest.errors import UsageError

if TYPE_CHECKING:  # the command imports it when run: httpx is slow to import
    from digest.fetching import FetchResult


@click.command("fetch")
@click.option("--source", "name", metavar="NAME", help="Only this source (even if disabled).")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The listing of this day (YYYY-MM-DD), for a backfill; daily-papers sources only.",
)
@click.option(
    "--force", is_flag=True, help="Ask even a source that is backing off or said Retry-After."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per source, in an array."
)
@click.pass_obj
def fetch_command(
    app: App, name: str | None, day: datetime | None, force: bool, as_json: bool
) -> None:
    """Fetch the papers of every enabled source now (or of --source NAME).

    Unlike the service, which asks each source once per its `every`, this asks
    now, except a source that is backing off after failures or asked to be
    left alone (Retry-After): --force asks it too. It stays polite all the
    same: a conditional request (an unchanged listing adds nothing), the
    timeouts and size cap of [fetch], and a User-Agent with [fetch]
    contact_url. Each changed response is kept in [fetch] archive_dir;
    `digest ingest FILE` replays one. With --date, only daily-papers sources
    are asked, and their state (validators, failures) is left as it was.

    Exit status: 0 when every source answered, 1 when any failed,
    2 for usage or config errors (an unknown source, no sources configured,
    --date with a source of another kind).
    """
    from digest import fetching

    with errors(app):
        listing = day.date() if day is not None else None
        sources = fetching.chosen(app.config, name, listing)
        if not sources:
            wanted = "daily-papers sources" if listing else "sources"
            raise UsageError(
                f"no {wanted} to fetch: add a [[sources]] table to the config",
                "see config.example.toml",
            )
        with fetching.make_client(app.config.fetch) as client:
            results = fetching.fetch_all(
                app.writable_store,
                app.config,
                client,
                now(),
                sources,
                asking="force" if force else "now",
                day=listing,
            )
    if as_json:
        emit_json([result.as_json() for result in results])
    else:
        for result in results:
            click.echo(_line(result))
    sys.exit(1 if any(result.status == "failed" for result in results) else 0)


def _line(result: "FetchResult") -> str:
    if result.status == "failed":
        later = f" (next attempt {result.next_attempt})" if result.next_attempt else ""
        kept = f"; kept as {result.archived}" if result.archived else ""
        return f"{result.source}: failed: {result.error}{later}{kept}"
    if result.status == "not-due":
        return f"{result.source}: backing off until {result.next_attempt} (--force asks now)"
    if result.status == "not-modified":
        return f"{result.source}: not modified since the last fetch"
    line = f"{result.source}: {result.status}, {result.entries} entries, {result.new} new"
    if result.skipped:
        line += f", {len(result.skipped)} items skipped ({result.skipped[0]}…)"
    return line + (f"; kept as {result.archived}" if result.archived else "")
