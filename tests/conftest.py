"""Shared fixtures: the real seed dumps, a fresh or seeded store, a fixed clock, configs,
an SMTP sink, the CLI."""

import gc
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import Config, from_mapping
from digest.ingest import ingest_files
from digest.models import Entry
from digest.store import Store

from .smtp_servers import Server, Sink, serve

# ``make unit`` (the inner loop) runs each property test on a third of its examples;
# ``make test`` and CI run all of them.
FUZZ_SCALE = float(os.environ.get("DIGEST_FUZZ_SCALE", "1"))


def examples(count: int) -> int:
    """A property test's number of examples, scaled for the inner loop (at least 20)."""
    return max(20, round(count * FUZZ_SCALE))


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
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty store at ``tmp_path/digest.db``."""
    with closing(Store(tmp_path / "digest.db")) as opened:
        yield opened


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed dumps ingested once, at NOW.  Shared by every test: copy it, never open it."""
    path = tmp_path_factory.mktemp("seeded") / "digest.db"
    with closing(Store(path)) as store:
        ingest_files(store, SEED_FILES, NOW)
    return path


@pytest.fixture
def seeded_store(tmp_path: Path, seeded_database: Path) -> Iterator[Store]:
    """A store at ``tmp_path/digest.db`` holding the seed dumps, ingested at NOW; the
    test's own copy (so it stands in for ``store``, never beside it)."""
    with closing(Store(copy_database(seeded_database, tmp_path))) as opened:
        yield opened


def copy_database(database: Path, folder: Path) -> Path:
    """A copy of a closed database (no WAL left beside it) as ``folder/digest.db``."""
    return Path(shutil.copy(database, folder / "digest.db"))


def from_source(
    store: Store, source: str, listing: str, entries: Sequence[Entry], at: datetime
) -> None:
    """A source's response stored as ingest stores it: one dump, its entries (with the
    ``meta`` the source gave), its listing."""
    with store.write():
        dump = store.add_dump(f"{source}.{listing}", os.urandom(8).hex(), at, source=source)
        counts = store.add_entries(dump, [entries], at)
        store.finish_dump(dump, listing, counts)


def make_config(folder: Path | None = None, **sections: Mapping[str, Any] | list[Any]) -> Config:
    """A validated config from TOML-like ``sections`` (``delivery={"maildir": "mail"}``,
    ``topics=[...]``); relative paths are taken from ``folder``, as from a config file there."""
    return from_mapping(sections, source=folder / "config.toml" if folder else None)


@pytest.fixture
def sink() -> Iterator[Server]:
    """A real SMTP server on a loopback port that accepts and records every message."""
    with serve(Sink()) as server:
        yield server


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection built (modules, fixtures, test items) out of the collector's way,
    and collect less often: the cyclic garbage collector then walks only what tests
    allocate, a tenth as often (tests make many short-lived containers and few cycles)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
