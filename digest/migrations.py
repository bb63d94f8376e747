"""The schema, as append-only migrations: never edit one that has shipped, add the next.

Each migration runs in its own transaction (sqlite-utils ``Migrations``).
"""

from sqlite_utils import Database, Migrations

from digest.tokens import FTS_TOKENIZE

migrations = Migrations("digest")


def _run(db: Database, *statements: str) -> None:
    for statement in statements:
        db.execute(statement)


@migrations()
def m001_papers_dumps_sightings(db: Database) -> None:
    """Papers (seq is the rowid the FTS index joins on), dumps, sightings, rejections, FTS5."""
    _run(
        db,
        """CREATE TABLE dumps (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            file_name TEXT NOT NULL,
            listing_date TEXT,
            ingested_at TEXT NOT NULL,
            entries INTEGER NOT NULL DEFAULT 0,
            new_papers INTEGER NOT NULL DEFAULT 0,
            seen_papers INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE papers (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            abstract TEXT NOT NULL,
            links TEXT NOT NULL DEFAULT '[]',
            first_seen TEXT NOT NULL,
            first_dump INTEGER NOT NULL REFERENCES dumps(id)
        )""",
        "CREATE INDEX papers_first_seen ON papers(first_seen)",
        """CREATE TABLE sightings (
            dump_id INTEGER NOT NULL REFERENCES dumps(id),
            position INTEGER NOT NULL,
            paper_seq INTEGER NOT NULL REFERENCES papers(seq),
            PRIMARY KEY (dump_id, position)
        ) WITHOUT ROWID""",
        "CREATE INDEX sightings_paper ON sightings(paper_seq)",
        """CREATE TABLE rejections (
            id INTEGER PRIMARY KEY,
            file_name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            error TEXT NOT NULL,
            rejected_at TEXT NOT NULL
        )""",
        """CREATE VIEW paper_trends AS
            SELECT s.paper_seq AS seq,
                   COUNT(DISTINCT s.dump_id) AS times_seen,
                   MIN(s.position) AS best_position,
                   MAX(d.ingested_at) AS last_seen
            FROM sightings s JOIN dumps d ON d.id = s.dump_id
            GROUP BY s.paper_seq""",
    )
    db.table("papers").enable_fts(["title", "abstract"], tokenize=FTS_TOKENIZE)
    _run(
        db,
        """CREATE TRIGGER papers_fts_delete AFTER DELETE ON papers BEGIN
            INSERT INTO papers_fts(papers_fts, rowid, title, abstract)
            VALUES ('delete', old.seq, old.title, old.abstract);
        END""",
        """CREATE TRIGGER papers_fts_update AFTER UPDATE OF title, abstract ON papers BEGIN
            INSERT INTO papers_fts(papers_fts, rowid, title, abstract)
            VALUES ('delete', old.seq, old.title, old.abstract);
            INSERT INTO papers_fts(rowid, title, abstract)
            VALUES (new.seq, new.title, new.abstract);
        END""",
    )
