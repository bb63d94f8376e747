"""Files digest keeps for itself are owner-only whatever the umask; a full disk is one line."""

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.errors import DiskFull
from digest.feeds import build_all
from digest.files import create_exclusive, printable_name
from digest.ingest import ingest_files
from digest.mailer import Envelope, MaildirTransport
from digest.store import Store

from .conftest import NOW
from .test_feeds import feeds_config, subscribe


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_database_and_its_new_folder_are_owner_only(tmp_path: Path, umask_022: None) -> None:
    store = Store(tmp_path / "var" / "digest.db")
    try:
        assert mode(tmp_path / "var" / "digest.db") == 0o600
        assert mode(tmp_path / "var" / "digest.db-wal") == 0o600
        assert mode(tmp_path / "var") == 0o700
    finally:
        store.close()


def test_a_maildir_message_is_owner_only(tmp_path: Path, umask_022: None) -> None:
    async def deliver() -> None:
        async with MaildirTransport(tmp_path / "mail") as transport:
            await transport.send(Envelope("a@example.org", "b@example.org", b"Hi\r\n", "<1@x>"))

    asyncio.run(deliver())
    [message] = (tmp_path / "mail" / "new").iterdir()
    assert mode(message) == 0o600
    assert mode(tmp_path / "mail") == 0o700


def test_private_feed_files_are_owner_only_and_public_ones_readable(
    tmp_path: Path, umask_022: None, seed_files: list[Path]
) -> None:
    store = Store(tmp_path / "digest.db")
    try:
        ingest_files(store, seed_files, NOW)
        subscribe(store, "ada@example.org", "active")
        written = build_all(store, feeds_config(tmp_path / "feeds", private_static=True), now=NOW)
    finally:
        store.close()
    private = [p for p, _ in written if p.parent.name == "private"]
    assert len(private) == 2
    assert {mode(p) for p in private} == {0o600}
    assert mode(tmp_path / "feeds" / "private") == 0o700
    assert mode(tmp_path / "feeds" / "all.atom") == 0o644


def test_an_exclusive_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "x.error").symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_exclusive(tmp_path / "x.error", b"overwritten")
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize(
    ("free", "said"),
    [(0, "0 bytes free"), (512, "512 bytes free"), (3 << 20, "3.0 MiB free"), (None, "unknown")],
)
def test_a_full_disk_message_names_the_place_and_the_free_space(
    free: int | None, said: str
) -> None:
    message = str(DiskFull("/var/lib/digest/digest.db", free))
    assert message.startswith("/var/lib/digest/digest.db: the disk is full (")
    assert said in message
    assert message.endswith("(free some space there, then retry)")


def test_a_name_that_is_not_utf8_is_shown_printable() -> None:
    assert printable_name(os.fsdecode(b"caf\xe9\n.txt")) == "caf\\xe9\\x0a.txt"
    assert printable_name("café.txt") == "café.txt"
