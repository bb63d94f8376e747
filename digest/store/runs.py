"""Job runs: what the scheduler did and when, so a restart knows what it missed."""

from digest.store.base import Base


class RunStore(Base):
    def start_run(self, job: str, scheduled_for: str, started_at: str) -> int:
        with self.write():
            cursor = self.db.execute(
                "INSERT INTO job_runs (job, scheduled_for, started_at) VALUES (?, ?, ?)",
                [job, scheduled_for, started_at],
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, finished_at: str, summary: str) -> None:
        with self.write():
            self.db.execute(
                "UPDATE job_runs SET finished_at = ?, summary = ? WHERE id = ?",
                [finished_at, summary, run_id],
            )

    def last_scheduled(self, job: str) -> str | None:
        """The latest slot of ``job`` that a run finished (a crashed run does not count)."""
        row = self.db.execute(
            "SELECT MAX(scheduled_for) FROM job_runs WHERE job = ? AND finished_at IS NOT NULL",
            [job],
        ).fetchone()
        return row[0] if row else None
