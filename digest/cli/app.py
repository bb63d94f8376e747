"""What every command shares: the per-invocation state, errors, JSON output, dates.

The global flags (``--config``, ``-v``, ``-q``) are read by the ``digest`` group
before the command and, through ``global_options``, by every command and group
after it: both update the one ``App`` of the invocation.
"""

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from digest.errors import DigestError, UsageError

if TYPE_CHECKING:  # imported where used: ``digest --help`` needs neither pydantic nor SQLite
    from digest import declared
    from digest.config import Config
    from digest.store import Store


@dataclass
class App:
    """Per-invocation state: the config file named, verbosity, and what was opened lazily."""

    config_path: Path | None
    verbose: int
    level_given: bool = False
    quiet: bool = False
    _config: "Config | None" = None
    _store: "Store | None" = field(default=None, repr=False)

    @property
    def config(self) -> "Config":
        if self._config is None:
            from digest import config

            self._config = config.load(self.config_path)
        return self._config

    @property
    def store(self) -> "Store":
        """The existing database, opened on first use; opening it writes nothing.

        Only ``run``, ``ingest`` and ``migrate`` create or migrate it (``writable_store``).
        """
        if self._store is None:
            from digest.store import Store

            database = self.config.storage.database
            self._store = Store(database, create=False, named_by=self._named_by())
        return self._store

    @property
    def writable_store(self) -> "Store":
        """The database, created and migrated as needed."""
        if self._store is None:
            from digest.store import Store

            self._store = Store(self.config.storage.database)
        return self._store

    @property
    def log_level(self) -> int:
        """``-q`` wins over ``-v``; INFO when neither is given."""
        return logging.WARNING if self.quiet else (logging.DEBUG if self.verbose else logging.INFO)

    def _named_by(self) -> str:
        source = self.config.source
        return f"[storage] database in {source}" if source else "built-in default, no config file"

    def sync_subscribers(self, *, dry_run: bool = False) -> "list[declared.SyncStep]":
        """The config's ``[[subscribers]]`` into the database (skipped without a config file)."""
        from digest import declared

        return declared.sync_declared(self.store, self.config, now(), dry_run=dry_run)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def now() -> datetime:
    return datetime.now(UTC)


def start(ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool) -> App:
    """The ``App`` of this invocation; logging set up from the flags given before the command."""
    app = App(config_path, verbose, level_given=quiet or bool(verbose), quiet=quiet)
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    stamp = "" if under_journal else "%(asctime)s "
    logging.basicConfig(
        level=app.log_level, format=f"{stamp}%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = app
    ctx.call_on_close(app.close)
    return app


# the global flags ------------------------------------------------------------------------

CONFIG_HELP = (
    "Config file. Default: $DIGEST_CONFIG, else ./config.toml if present, else built-in "
    "defaults with data under ./var/."
)
VERBOSE_HELP = "More detail (and tracebacks on errors)."
QUIET_HELP = "Only errors."
CONFIG_TYPE = click.Path(dir_okay=False, path_type=Path)


def _app_of(ctx: click.Context) -> App:
    app = ctx.find_object(App)
    if app is None:  # a command invoked without the ``digest`` group
        raise click.UsageError("run this command through `digest`", ctx)
    return app


def _config_after(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        _app_of(ctx).config_path = value


def _verbose_after(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        app = _app_of(ctx)
        app.verbose += value
        app.level_given = True
        logging.getLogger().setLevel(app.log_level)


def _quiet_after(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        app = _app_of(ctx)
        app.quiet = app.level_given = True
        logging.getLogger().setLevel(app.log_level)


def global_options() -> list[click.Parameter]:
    """``--config``, ``-v`` and ``-q`` for a command or group, to give them after its name.

    They are processed when the command's arguments are parsed, after the ``digest``
    group has made the ``App`` and before the command runs.
    """
    return [
        click.Option(
            ["--config"],
            type=CONFIG_TYPE,
            expose_value=False,
            callback=_config_after,
            help=CONFIG_HELP,
        ),
        click.Option(
            ["-v", "--verbose"],
            count=True,
            expose_value=False,
            callback=_verbose_after,
            help=VERBOSE_HELP,
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_quiet_after,
            help=QUIET_HELP,
        ),
    ]


def add_global_options(command: click.Command) -> None:
    """``global_options`` on ``command`` and, for a group, every command below it."""
    command.params.extend(global_options())
    if isinstance(command, click.Group):
        for below in command.commands.values():
            add_global_options(below)


# errors and output -----------------------------------------------------------------------


def fail(err: DigestError, verbose: int) -> NoReturn:
    if verbose:
        logging.getLogger("digest").exception("traceback")
    click.echo(f"error: {err}", err=True)
    sys.exit(err.exit_code)


@contextmanager
def errors(app: App) -> Iterator[None]:
    """A ``DigestError`` inside becomes one line on standard error and its exit status."""
    try:
        yield
    except DigestError as err:
        fail(err, app.verbose)


def echo_byline(authors: Sequence[str]) -> None:
    """A listed paper's byline, indented under its title; nothing when no source named anyone."""
    from digest.paper_links import byline

    names = byline(authors)
    if names:
        click.echo(f"    {names}")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def emit_json_array(items: Iterable[Any]) -> None:
    """``emit_json(list(items))``, byte for byte, printed item by item as they come."""
    lead = "[\n  "
    for item in items:
        text = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        click.echo(lead + text, nl=False)
        lead = ",\n  "
    click.echo("[]" if lead == "[\n  " else "\n]")


# dates -----------------------------------------------------------------------------------

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
    from digest.store import iso

    try:
        iso(moment_given)
    except (OverflowError, ValueError):
        raise UsageError(f"--since {value!r}: out of range", "use a date after 1970") from None
    return moment_given
