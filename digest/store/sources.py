"""Sources: each one's fetch state — validators, back-off, and the last outcome."""

from dataclasses import asdict, dataclass

from digest.store.base import Base


@dataclass(frozen=True, slots=True)
class SourceState:
    """What digest remembers of a source between fetches and restarts (times in ISO UTC).

    ``etag`` and ``last_modified`` make the next request conditional; ``failures``
    counts the failures since the last success and drives the back-off;
    ``next_attempt`` is the earliest time the source may be asked again.
    """

    name: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    failures: int = 0
    next_attempt: str | None = None

    def as_json(self) -> dict[str, object]:
        found = asdict(self)
        found.pop("etag")
        found.pop("last_modified")
        return found


_COLUMNS = tuple(SourceState.__dataclass_fields__)


class SourceStore(Base):
    def source_state(self, name: str) -> SourceState:
        """The source's state; a source never fetched has an empty one."""
        row = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM sources WHERE name = ?", [name]
        ).fetchone()
        return SourceState(*row) if row else SourceState(name)

    def source_states(self) -> list[SourceState]:
        rows = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM sources ORDER BY name")
        return [SourceState(*row) for row in rows]

    def save_source_state(self, state: SourceState) -> None:
        marks = ", ".join("?" * len(_COLUMNS))
        with self.write():
            self.db.execute(
                f"INSERT OR REPLACE INTO sources ({', '.join(_COLUMNS)}) VALUES ({marks})",
                [getattr(state, column) for column in _COLUMNS],
            )
