"""The one error family: every message says what went wrong and how to fix it.

The CLI prints these without a traceback and exits with ``exit_code``.
"""

from unicodedata import east_asian_width


class DigestError(Exception):
    """Base of every error the user can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(DigestError):
    """The command was asked for something it cannot do as given."""

    exit_code = 2


class UndeliverableAddress(UsageError):
    """A well-formed address this service cannot deliver to (a non-ASCII local part)."""


class ConfigError(UsageError):
    """The configuration file is unreadable or invalid."""


class Refused(UsageError):
    """A change the subscriber lifecycle does not allow (see ``lifecycle.TRANSITIONS``)."""


class DumpError(DigestError):
    """A dump file was rejected; ``line`` is 1-based, 0 when the whole file is at fault."""

    def __init__(self, message: str, *, source: str = "<dump>", line: int = 0) -> None:
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")
        self.reason = message


class WorkerError(DigestError):
    """The parser process died before the end of the file (the file itself may be fine)."""


class BuildError(DigestError):
    """One subscriber's digest could not be built (matched, rendered or recorded)."""


class RenderError(DigestError):
    """A digest could not be rendered (missing templates, or too big even when empty)."""


class DeliveryError(DigestError):
    """The transport as a whole cannot deliver; nothing was sent, the digests stay queued."""


class RelayRefused(DeliveryError):
    """The relay turned us away for a reason of its own, not the recipients'.

    Too many connections, out of storage, too much mail, or the same refusal for
    every recipient: no digest is at fault, so none uses up an attempt and no
    subscriber counts a bounce; the run stops and a later run sends them.
    """


class StoreError(DigestError):
    """The database is missing, locked, or newer than this program."""


class MissingDatabase(StoreError):
    """The database named by the config does not exist (and this command never creates one)."""

    exit_code = 2


class DatabaseReplaced(StoreError):
    """The database file is not the one the service opened (deleted, or replaced)."""


class AlreadyRunning(DigestError):
    """Another ``digest run`` holds this database."""


class QueryError(UsageError):
    """A filter query that does not parse; ``column`` is 0-based into ``query``."""

    def __init__(self, reason: str, *, query: str, column: int) -> None:
        self.reason = reason
        self.query = query
        self.column = max(0, min(column, len(query)))
        super().__init__(f"bad filter at column {self.column + 1}: {reason}")

    def caret(self) -> str:
        """The query on one line and a caret under the offending column on the next."""
        shown = "".join(" " if c in "\t\r\n\v\f" else c for c in self.query)
        width = sum(2 if east_asian_width(c) in "WF" else 1 for c in shown[: self.column])
        return f"  {shown}\n  {' ' * width}^"

    def __str__(self) -> str:
        return f"{self.message}\n{self.caret()}"


class SourceFailed(DigestError):
    """A listing source could not be fetched or read; ``reason`` is one line for a log and status.

    ``retry_after``: the seconds the server asked us to wait (429 or 503 with a
    ``Retry-After``), for the scheduler's back-off; None when it said nothing.
    """

    def __init__(
        self, reason: str, *, retry_after: float | None = None, hint: str | None = None
    ) -> None:
        super().__init__(reason, hint)
        self.reason = reason
        self.retry_after = retry_after


class DiskFull(DigestError):
    """The disk (or the database's size limit) is full: nothing more can be written there.

    Raised at the store's write transaction and by the inbox's moves and
    ``.error`` files, so a full disk is one line naming the place and its free
    space rather than a traceback; the transaction is rolled back first.
    """

    def __init__(self, path: str, free_bytes: int | None) -> None:
        free = "free space unknown" if free_bytes is None else f"{_size(free_bytes)} free"
        super().__init__(f"{path}: the disk is full ({free})", "free some space there, then retry")
        self.path = path
        self.free_bytes = free_bytes


class FileChanged(DigestError):
    """A dump changed while it was being read, so it is still being written: left for later."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path}: changed while being read (still being written?); left in the inbox",
            "write a dump under a dot-name or a .part suffix and rename it when complete",
        )
        self.path = path


class UnsafeInbox(DigestError):
    """A folder of the inbox is a symbolic link (or not a folder): digest never follows one."""


def _size(count: int) -> str:
    """``512 bytes``, ``3.2 MiB``: enough to see how full a disk is."""
    if count < 1024:
        return f"{count} bytes"
    value, unit = count / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
