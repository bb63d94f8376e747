"""``digest run``, ``serve`` and ``feeds build``: the long-running service and its outputs."""

import logging
import sys
from datetime import datetime

import click

from digest.cli.app import App, emit_json, errors
from digest.cli.mail import point_at_newest


@click.command("run")
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
    with errors(app):
        if not app.level_given:
            logging.getLogger().setLevel(app.config.log.level.upper())
        app.writable_store  # noqa: B018  (creates and migrates the database before any job)
        app.sync_subscribers()
        if once:
            from digest import pipeline

            report = pipeline.run_once(app.config, lambda: datetime.now(app.config.schedule.zone))
            point_at_newest(app.config)
            sys.exit(report.exit_status)
        from digest.scheduler import Service

        sys.exit(Service(app.config, app.config_path).run())


@click.command("serve")
@click.option("--host", help="Address to listen on (default [web] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default [web] port).")
@click.pass_obj
def serve_command(app: App, host: str | None, port: int | None) -> None:
    """Serve the web front: subscribe, confirm, manage, unsubscribe, feeds, /healthz.

    Needs the signing key in the variable named by [web] secret_env, except on
    a loopback address, where a key is generated once per database.
    """
    from digest import web  # the web stack loads only for this command

    with errors(app):
        app.sync_subscribers()
        web.serve(app.config, host, port)


@click.group("feeds")
def feeds_group() -> None:
    """Atom and RSS feeds: public, per topic and per subscriber."""


@feeds_group.command("build")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {path, entries}.")
@click.pass_obj
def feeds_build(app: App, as_json: bool) -> None:
    """Write the public feeds (and private ones when [feeds] private_static) into [feeds] dir."""
    with errors(app):
        from digest.feeds import build_all

        written = build_all(app.store, app.config)
    if as_json:
        emit_json([{"path": str(path), "entries": entries} for path, entries in written])
        return
    for path, entries in written:
        click.echo(f"{path}  {entries} entries")
