"""The ``digest`` command: parse arguments, call one core function, print the result.

One module per group of commands: ``ingest`` (ingest, papers, status, migrate),
``fetching`` (fetch),
``subscribers`` (the subscribers group), ``matching`` (match, explain), ``mail``
(preview, send, the outbox group, prune), ``model`` (the model group, evaluate)
and ``service`` (run, serve, the feeds
group); ``app`` holds what they share.  This module makes the ``digest`` group and
gives every command the global flags so that they work after it too
(``digest status -v``).

The group is lazy: a command's module is imported only when that command runs, so
each command pays only for the libraries it uses, and ``digest --help`` lists the
commands from ``COMMANDS`` (a test keeps its lines equal to each command's own).

No SQL, SMTP or template code here.  Errors from the core (``DigestError``)
are printed on one line without a traceback (``-v`` shows it) and set the
exit status: 2 for usage and config errors, 1 otherwise.
"""

from importlib import import_module
from pathlib import Path
from typing import NamedTuple

import click

from digest.cli.app import (
    CONFIG_HELP,
    CONFIG_TYPE,
    QUIET_HELP,
    VERBOSE_HELP,
    App,
    add_global_options,
    now,
    parse_since,
    start,
)

__all__ = ["App", "cli", "main", "now", "parse_since"]


class Entry(NamedTuple):
    """Where a command is defined (``module:attribute`` under ``digest.cli``), and the
    first sentence of its help, which ``digest --help`` shows."""

    where: str
    short_help: str


COMMANDS: dict[str, Entry] = {
    "evaluate": Entry(
        "model:evaluate_command",
        "Replay history: each reader's model against trending, day by day.",
    ),
    "explain": Entry(
        "matching:explain_command",
        "Say why PAPER (id or title) is or is not in EMAIL's next digest.",
    ),
    "feeds": Entry(
        "service:feeds_group", "Atom and RSS feeds: public, per topic and per subscriber."
    ),
    "fetch": Entry(
        "fetching:fetch_command",
        "Fetch the papers of every enabled source now (or of --source NAME).",
    ),
    "ingest": Entry(
        "ingest:ingest", "Ingest dump files (and the files inside folders) into the store."
    ),
    "match": Entry(
        "matching:match_command",
        "Run a filter over the stored papers, or show what a subscriber would get next.",
    ),
    "migrate": Entry(
        "ingest:migrate_command",
        "Create the database, or bring its schema up to this version of digest.",
    ),
    "model": Entry(
        "model:model_group",
        "The readers' relevance models (learned from their likes, on this machine).",
    ),
    "outbox": Entry(
        "mail:outbox_group",
        "See the digests waiting or failed, and retry them after a relay problem.",
    ),
    "papers": Entry(
        "ingest:papers", "List stored papers, newest first, with how often they trended."
    ),
    "preview": Entry(
        "mail:preview_command",
        "Print the digest EMAIL would get now (HTML by default); records and sends nothing.",
    ),
    "prune": Entry(
        "mail:prune_command",
        "Remove what grows without bound and nobody reads (the service does it daily).",
    ),
    "run": Entry(
        "service:run_command",
        "Run the service: poll the inbox, deliver on schedule, rebuild the feeds, prune daily.",
    ),
    "send": Entry(
        "mail:send_command",
        "Build the digest of every subscriber that is due, then deliver what is ready.",
    ),
    "serve": Entry(
        "service:serve_command",
        "Serve the web front: subscribe, confirm, manage, unsubscribe, feeds, /healthz.",
    ),
    "status": Entry(
        "ingest:status",
        "Counts, last ingest, the outbox, the last delivery run, database path and size.",
    ),
    "subscribers": Entry(
        "subscribers:subscribers_group",
        "Add, list, change and remove subscribers (also: CSV import and export).",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name when they are invoked (or asked for)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._resolved: dict[str, click.Command] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = self._resolved.get(cmd_name)
        if command is None:
            module, attribute = entry.where.split(":")
            command = getattr(import_module(f"digest.cli.{module}"), attribute)
            assert isinstance(command, click.Command)
            add_global_options(command)
            command = self._resolved[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing ``click.Group`` makes, from ``COMMANDS`` instead of the commands."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [
            (name, click.Command(name, help=entry.short_help).get_short_help_str(limit))
            for name, entry in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--config", "config_path", type=CONFIG_TYPE, help=CONFIG_HELP)
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@click.version_option(package_name="digest", message="digest %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool) -> None:
    """Trending research papers, filtered per subscriber, by email and Atom/RSS.

    Dumps (text copies of a trending-papers listing) are ingested into a SQLite
    store; each subscriber's keyword filter picks their papers.
    """
    start(ctx, config_path, verbose, quiet)


def main() -> None:
    cli(prog_name="digest")
