"""The command line: help everywhere, JSON shapes kept, exit statuses, no tracebacks."""

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from digest.cli import COMMANDS, cli
from digest.models import Entry, PaperMeta
from digest.store import Store

from .conftest import ROOT, RunCli


def all_commands(group: click.Group = cli, prefix: str = "") -> list[str]:
    names = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names.extend(all_commands(command, f"{prefix}{name} "))
    return names


# the lazy group ----------------------------------------------------------------------------


def test_the_help_lists_every_command_as_the_command_itself_would() -> None:
    for width in (60, 80, 100, 140):
        context = click.Context(cli, terminal_width=width, max_content_width=width)
        lazy, eager = context.make_formatter(), context.make_formatter()
        cli.format_commands(context, lazy)
        click.Group.format_commands(cli, context, eager)  # each command imported and asked
        assert lazy.getvalue() == eager.getvalue()
        assert lazy.getvalue().count("\n") == len(COMMANDS) + 1
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert command is not None
        assert command.name == name
        assert COMMANDS[name].short_help == command.get_short_help_str(10_000)
    assert cli.get_command(context, "no-such-command") is None


def test_help_and_a_command_import_only_what_they_use() -> None:
    probe = (
        "import sys\n"
        "from digest.cli import cli\n"
        "cli(sys.argv[1:], standalone_mode=False)\n"
        "heavy = ('pydantic', 'sqlite_utils', 'jinja2', 'digest.cli.mail', 'digest.cli.service')\n"
        "print(' '.join(name for name in heavy if name in sys.modules))\n"
    )

    def loaded(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return set(done.stdout.splitlines()[-1].split())

    assert loaded("--help") == set()
    assert loaded("status", "--help") == set()
    assert "digest.cli.mail" in loaded("preview", "--help")
    assert not loaded("preview", "--help") & {"jinja2", "digest.cli.service"}


@pytest.mark.parametrize("command", all_commands())
def test_every_command_has_help_and_is_in_the_readme(run_cli: RunCli, command: str) -> None:
    result = run_cli(*command.split(), "--help", config=None)
    assert result.exit_code == 0
    assert "Usage: " in result.stdout
    assert len(result.stdout.splitlines()) > 3
    assert f"digest {command}" in (ROOT / "README.md").read_text()


def test_ingest_json_reports_each_file(run_cli: RunCli, seed_files: list[Path]) -> None:
    result = run_cli("ingest", str(seed_files[0].parent), "--json")
    assert result.exit_code == 0
    files = result.json()["files"]
    assert [set(f) for f in files] == [{"path", "status", "entries", "new", "seen", "error"}] * 5
    assert sum(f["entries"] for f in files) == 767
    assert sum(f["new"] for f in files) == 689
    again = run_cli("ingest", *map(str, seed_files), "--json").json()["files"]
    assert {f["status"] for f in again} == {"duplicate"}
    assert sum(f["new"] for f in again) == 0


def test_ingest_exits_1_when_a_file_is_rejected_and_still_ingests_the_rest(
    run_cli: RunCli, seed_files: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe not text")
    result = run_cli("ingest", str(seed_files[0]), str(bad), "--json")
    assert result.exit_code == 1
    statuses = [(f["status"], f["error"]) for f in result.json()["files"]]
    assert statuses[0] == ("ingested", None)
    assert statuses[1][0] == "rejected"
    assert f"{bad}:1: not UTF-8 text" in statuses[1][1]


def test_ingest_prints_a_readable_summary(run_cli: RunCli, seed_files: list[Path]) -> None:
    result = run_cli("ingest", str(seed_files[0]))
    assert result.exit_code == 0
    assert "54 entries, 54 new, 0 seen" in result.stdout
    assert "1 files: 1 ingested, 0 duplicate, 0 rejected; 54 new papers" in result.stdout


def test_ingest_inbox_uses_the_configured_folder(
    run_cli: RunCli, seed_files: list[Path], config_file: Path
) -> None:
    inbox = config_file.parent / "inbox"
    inbox.mkdir()
    shutil.copy2(seed_files[0], inbox)  # its mtime kept: settled, so taken at once
    result = run_cli("ingest", "--inbox", "--json")
    assert result.exit_code == 0
    assert result.json()["files"][0]["status"] == "ingested"
    assert (inbox / "processed" / seed_files[0].name).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest",), "give PATH... or --inbox"),
        (("ingest", "/no/such/dump.txt"), "/no/such/dump.txt: no such file or folder"),
        (("papers", "--since", "last tuesday"), "--since 'last tuesday': not a date"),
        (("papers", "--limit", "0"), "Invalid value for '--limit'"),
        (("papers", "--limit", "9223372036854775808"), "Invalid value for '--limit'"),
        (("papers", "--since", "1000000d"), "--since '1000000d': at most 36500d"),
        (("papers", "--since", "9999-12-31T23:00:00-05:00"), "out of range"),
        (("outbox", "list", "--limit", "100000000000000000000"), "Invalid value for '--limit'"),
        (("nonsense",), "No such command"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(
    run_cli: RunCli, args: tuple[str, ...], message: str
) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_config_exits_2_naming_the_key_without_a_traceback(
    run_cli: RunCli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nport = 'x'\n")
    result = run_cli("status", config=bad)
    assert result.exit_code == 2
    assert (
        result.stderr == f"error: {bad}: [smtp] port: input should be a valid integer (got 'x')\n"
    )


def test_papers_json_has_the_documented_fields(run_cli: RunCli, seed_files: list[Path]) -> None:
    run_cli("ingest", *map(str, seed_files))
    result = run_cli("papers", "--json", "--limit", "1000")
    papers = result.json()
    assert len(papers) == 689
    assert {"id", "title", "abstract", "first_seen", "times_seen"} <= set(papers[0])
    assert max(p["times_seen"] for p in papers) >= 2


def test_papers_and_match_show_the_byline_a_source_gave(run_cli: RunCli, tmp_path: Path) -> None:
    meta = PaperMeta(arxiv_id="2411.01234", authors=("Ada Lovelace", "Charles Babbage"))
    when = datetime.now(UTC)
    with closing(Store(tmp_path / "var" / "digest.db")) as store, store.write():
        dump = store.add_dump("hf", "f" * 64, when, source="hf")
        batch = [
            Entry.of(1, "Zyzzyva agents", "An abstract about zyzzyva.", 1, meta),
            Entry.of(2, "Zyzzyva without authors", "Another abstract about zyzzyva.", 2),
        ]
        store.finish_dump(dump, None, store.add_entries(dump, [batch], when))
    listed = run_cli("papers").stdout.splitlines()
    matched = run_cli("match", "--query", "zyzzyva").stdout.splitlines()
    for lines in (listed, matched):
        [first] = [i for i, line in enumerate(lines) if line.endswith("  Zyzzyva agents")]
        assert lines[first + 1] == "    Ada Lovelace and Charles Babbage"
        assert len(lines) == (3 if lines is listed else 5)  # no byline for the other paper


def test_papers_since_filters_by_first_seen(run_cli: RunCli, seed_files: list[Path]) -> None:
    run_cli("ingest", str(seed_files[0]))
    assert len(run_cli("papers", "--since", "1d", "--json").json()) == 50
    assert run_cli("papers", "--since", "2999-01-01", "--json").json() == []


def test_status_json_has_the_documented_fields(run_cli: RunCli, seed_files: list[Path]) -> None:
    run_cli("ingest", *map(str, seed_files))
    info = run_cli("status", "--json").json()
    assert (info["papers"], info["dumps"], info["subscribers"]) == (689, 5, 0)
    assert info["database"].endswith("digest.db")


def test_the_installed_console_script_runs_as_a_real_process(
    tmp_path: Path, seed_files: list[Path]
) -> None:
    env = {**os.environ, "DIGEST_CONFIG": ""}
    script = Path(sys.executable).with_name("digest")
    done = subprocess.run(
        [str(script), "ingest", str(seed_files[3]), "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"][0]["entries"] == 61
    assert (tmp_path / "var" / "digest.db").exists()


def test_quiet_ingest_prints_only_what_went_wrong(
    run_cli: RunCli, seed_files: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not a dump\n", encoding="utf-8")
    result = run_cli("-q", "ingest", str(seed_files[0]), str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"rejected   {bad}" in result.stderr


# global flags after the command ------------------------------------------------------------


@pytest.fixture
def root_level() -> Iterator[None]:
    """``-v`` and ``-q`` after a command set the root logger's level: put it back."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def test_status_v_after_the_command_shows_the_traceback_as_before_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[storage]\ndatabase = "var/missing.db"\n', encoding="utf-8")
    script = Path(sys.executable).with_name("digest")

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            cwd=tmp_path,
            env={**os.environ, "DIGEST_CONFIG": str(config)},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    after, before, plain = status("status", "-v"), status("-v", "status"), status("status")
    assert after.returncode == before.returncode == plain.returncode == 2
    assert "Traceback" in after.stderr
    assert "Traceback" in before.stderr
    assert "Traceback" not in plain.stderr
    assert after.stderr.endswith(plain.stderr)
    assert plain.stderr.startswith("error: no database at ")


def test_subscribers_list_takes_config_after_the_command(
    run_cli: RunCli, config_file: Path
) -> None:
    added = run_cli("subscribers", "add", "ada@example.org", "--filter", "agents")
    assert added.exit_code == 0
    for args in (
        ("subscribers", "list", "--json", "--config", str(config_file)),
        ("subscribers", "--config", str(config_file), "list", "--json"),
        ("subscribers", "list", "-q", "--config", str(config_file), "--json"),
    ):
        result = run_cli(*args, config=None)
        assert result.exit_code == 0, (args, result.stderr)
        assert [s["email"] for s in result.json()] == ["ada@example.org"], args
    missing = config_file.parent / "missing.toml"
    result = run_cli("subscribers", "list", "--config", str(missing))
    assert result.exit_code == 2
    assert f"error: {missing}: config file not found" in result.stderr


@pytest.mark.usefixtures("root_level")
def test_quiet_after_the_command_prints_only_what_went_wrong(
    run_cli: RunCli, seed_files: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not a dump\n", encoding="utf-8")
    result = run_cli("ingest", str(seed_files[0]), str(bad), "-q")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"rejected   {bad}" in result.stderr
    assert logging.getLogger().getEffectiveLevel() == logging.WARNING
