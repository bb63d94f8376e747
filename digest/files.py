"""Files the safe way: never through a planted symlink, owner-only where private, full disks named.

The inbox is a folder other people write into, so digest treats every name in
it (and in its ``processed/`` and ``failed/`` folders) as possibly hostile: it
opens with ``O_NOFOLLOW``, creates with ``O_EXCL | O_NOFOLLOW`` (a name that
exists, even as a link, is never written through), and moves with
``os.rename``, which replaces at most a link itself, never its target.  What
digest keeps for itself alone (the database, Maildir messages, private feeds)
is created ``0600`` whatever the umask, since it holds addresses and secrets.
"""

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from digest.errors import DiskFull

OWNER_ONLY = 0o600
OWNER_ONLY_DIR = 0o700
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC


@dataclass(frozen=True, slots=True)
class Seen:
    """What one ``stat`` said about a file: enough to tell that it changed or was replaced."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    mode: int

    @classmethod
    def of(cls, result: os.stat_result) -> "Seen":
        return cls(result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns, result.st_mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def age(self, now_seconds: float) -> float:
        """Seconds since the last write (negative for an mtime in the future)."""
        return now_seconds - self.mtime_ns / 1e9


def open_nofollow(path: Path) -> int:
    """A read-only descriptor of ``path`` itself: ``ELOOP`` for a symlink, no wait on a FIFO."""
    return os.open(path, _READ_FLAGS)


def create_exclusive(
    path: Path | str, data: bytes, mode: int = 0o644, *, dir_fd: int | None = None
) -> None:
    """Write a new file at ``path`` (relative to ``dir_fd`` when given) with ``mode``;
    ``FileExistsError`` if the name is taken (by anything, a dangling symlink included),
    so nothing is ever written through a link."""
    fd = os.open(path, _CREATE_FLAGS, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # the umask narrowed it, or (for 0600) it is already right
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path, dir_fd=dir_fd)
        raise
    os.close(fd)


def open_folder(folder: Path) -> int:
    """A descriptor of ``folder`` itself, never of what a link there points to: later
    names are resolved against it, so swapping the folder for a link changes nothing.
    Raises NotADirectoryError for a link or a file."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotADirectoryError(err.errno, "a link or not a folder", str(folder)) from None
        raise


def taken(name: str, dir_fd: int) -> bool:
    """Whether ``name`` exists in the folder ``dir_fd`` (a dangling link counts)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def create_private(path: Path) -> None:
    """Create an empty owner-only file at ``path`` unless one is there already."""
    try:
        os.close(os.open(path, _CREATE_FLAGS, OWNER_ONLY))
    except FileExistsError:
        return


def make_private_dir(path: Path) -> None:
    """``mkdir -p`` whose last folder, when made here, is owner-only whatever the umask."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=OWNER_ONLY_DIR)
    except FileExistsError:
        return
    path.chmod(OWNER_ONLY_DIR)


MAX_FILED_BYTES = 200  # room under NAME_MAX (255) for ".12" and ".error"


def printable_name(name: str) -> str:
    """``name`` as readable, storable text: bytes that are not UTF-8 (kept by Python as
    surrogates) become ``\\xff``, control characters ``\\x0a``, so it can be logged,
    stored in SQLite and shown whatever its bytes on disk were."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def filed_name(name: str) -> str:
    """``printable_name``, cut to ``MAX_FILED_BYTES`` with a hash of the whole name, so that
    with ``.1`` and ``.error`` added it still fits the 255 bytes a file name may have (a
    name of 250 bytes, or of 100 bytes that each print as ``\xff``, would not)."""
    printable = printable_name(name)
    if len(printable.encode()) <= MAX_FILED_BYTES:
        return printable
    mark = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    head = printable.encode()[: MAX_FILED_BYTES - 16].decode("utf-8", "ignore")
    return f"{head}…{mark}"


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_disk_full(err: BaseException, path: Path | None = None) -> bool:
    """SQLite's ``SQLITE_FULL`` (disk, quota or ``max_page_count``) or an ``ENOSPC``/``EDQUOT``;
    with ``path``, also SQLite's vague "disk I/O error" when that disk has no byte left
    (what opening a database on a full disk says: its ``-shm`` file cannot grow)."""
    if isinstance(err, sqlite3.OperationalError):
        code = getattr(err, "sqlite_errorcode", 0)
        if code == sqlite3.SQLITE_FULL or "database or disk is full" in str(err):
            return True
        return code & 0xFF == sqlite3.SQLITE_IOERR and path is not None and free_space(path) == 0
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path) -> DiskFull:
    """The one-line error for a full disk at ``path``, with the free space of its file system."""
    return DiskFull(str(path), free_space(path))


def free_space(path: Path) -> int | None:
    """Bytes free for ``path``'s file system (its nearest existing folder), None if unknown."""
    for place in (path, *path.parents):
        try:
            return shutil.disk_usage(place).free
        except OSError:
            continue
    return None


def write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``path`` whole or not at all: readers see the old file or the new one.

    ``private``: 0600 in a 0700 folder, whatever the umask (a private feed, whose
    address is its only key); else 0644, for a web server to read."""
    if private:
        make_private_dir(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed before the rename
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            handle.write(data)
        if not private:
            temporary.chmod(0o644)  # mkstemp makes it 0600; the web server must read it
        temporary.replace(path)  # atomic: readers see the old file or the new one
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
