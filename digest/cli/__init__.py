"""The ``digest`` command: parse arguments, call one core function, print the result.

One module per group of commands: ``ingest`` (ingest, papers, status, migrate),
``fetching`` (fetch),
``subscribers`` (the subscribers group), ``matching`` (match, explain), ``mail``
(preview, send, the outbox group, prune), ``model`` (the model group, evaluate)
and ``service`` (run, serve, the feeds
group); ``app`` holds what they share.  This module makes the ``digest`` group,
registers them, and gives every command the global flags so that they work after
it too (``digest status -v``).

Modules that pull in heavy libraries (mail, templates, feeds, the scheduler,
the web stack) are imported inside the commands that use them, so that
``digest ingest`` and the other quick commands start fast.

No SQL, SMTP or template code here.  Errors from the core (``DigestError``)
are printed on one line without a traceback (``-v`` shows it) and set the
exit status: 2 for usage and config errors, 1 otherwise.
"""

from pathlib import Path

import click

from digest.cli import fetching, ingest, mail, matching, model, service, subscribers
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


for command in (
    ingest.ingest,
    fetching.fetch_command,
    ingest.papers,
    ingest.status,
    ingest.migrate_command,
    subscribers.subscribers_group,
    matching.match_command,
    matching.explain_command,
    model.model_group,
    model.evaluate_command,
    mail.preview_command,
    mail.send_command,
    mail.outbox_group,
    mail.prune_command,
    service.run_command,
    service.serve_command,
    service.feeds_group,
):
    cli.add_command(command)
add_global_options(cli)


def main() -> None:
    cli(prog_name="digest")
