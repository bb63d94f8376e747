"""Shared fixtures: the real seed dumps, a fresh store, a fixed clock, the CLI."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.store import Store

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "examples" / "dumps"
SEED_FILES = sorted(SEEDS.glob("*.txt"))
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


@pytest.fixture
def seed_files() -> list[Path]:
    return SEED_FILES


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store(tmp_path / "digest.db")
    yield opened  # type: ignore[misc]
    opened.close()


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


RunCli = Callable[..., Result]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config whose data all lives in tmp_path, with its database created (``migrate``)."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\ndatabase = "var/digest.db"\n[inbox]\ndir = "inbox"\n'
        '[delivery]\nmaildir = "mail"\n[feeds]\ndir = "feeds"\n',
        encoding="utf-8",
    )
    Store(tmp_path / "var" / "digest.db").close()
    return path


@pytest.fixture
def run_cli(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """Run ``digest --config <tmp config> ARGS...`` in-process and capture its output."""
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)

    def run(*args: str, config: Path | None = config_file) -> Result:
        prefix = ["--config", str(config)] if config else []
        outcome = CliRunner().invoke(cli, [*prefix, *args], catch_exceptions=False)
        return Result(outcome.exit_code, outcome.stdout, outcome.stderr)

    return run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files in tests/golden/ from the current output (review the diff)",
    )
