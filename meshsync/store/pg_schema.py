"""PostgreSQL schema of :class:`~meshsync.store.postgres.PostgresStore`: numbered
migrations and the documented views (``docs/central-sql.md``).

Every object is named ``meshsync_*`` and created in the first schema of the
connection's ``search_path``, so meshsync can share a database with other
applications, and one database can hold several meshsync stores in different
schemas (``options=-csearch_path=...`` in the DSN).

Text columns use ``COLLATE "C"``: ordering is by code point (UTF-8 bytes), as in
SQLite and Python, whatever the database's locale. Text values go through
:func:`meshsync.store.pg_text.escape` (PostgreSQL text cannot hold U+0000).

Migrations are applied in order, each in its own transaction under a
transaction-level advisory lock, and recorded in ``meshsync_schema``; several
processes may start at once and each migration still runs exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshsync.model.errors import StorageError
from meshsync.store import pg_progress

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

#: Advisory lock key of schema changes (ASCII "mesh"): one database-wide lock.
MIGRATION_LOCK = 0x6D657368

_RECORDS_CURRENT = """
CREATE VIEW meshsync_records_current AS
SELECT partition, collection, key, fields, deleted, conflict, updated_at
FROM meshsync_records
"""

# Each record counts once under every prefix of its partition, by whole segments:
# up = 0 is the partition itself (a TPS), up = 1 its parent (a village), and so on.
# Records are counted per partition first (an index-only scan of
# meshsync_records_partition once vacuumed), and only those few rows are expanded.
_PROGRESS = """
CREATE VIEW meshsync_progress AS
WITH per_partition AS (
    SELECT partition, collection, count(*) AS records,
           count(*) FILTER (WHERE NOT deleted) AS live,
           count(*) FILTER (WHERE deleted) AS deleted,
           count(*) FILTER (WHERE conflict) AS conflicts
    FROM meshsync_records GROUP BY partition, collection)
SELECT array_to_string(p.segs[1:cardinality(p.segs) - u.up], '/') COLLATE "C" AS prefix,
       u.up AS up,
       cardinality(p.segs) - u.up AS level,
       a.collection AS collection,
       sum(a.records)::bigint AS records,
       sum(a.live)::bigint AS live,
       sum(a.deleted)::bigint AS deleted,
       sum(a.conflicts)::bigint AS conflicts
FROM per_partition a
CROSS JOIN LATERAL (SELECT string_to_array(a.partition, '/') AS segs) p
CROSS JOIN LATERAL generate_series(0, cardinality(p.segs) - 1) AS u(up)
GROUP BY 1, 2, 3, 4
"""

# Coklit visits per TPS, kampung and distrik (meshsync.coklit.visits): the result is
# `coklit`, else an old home's `status` other than MS; none is belum dicoklit. One scan
# of the live voters, grouped per partition first, then expanded as above.
_COKLIT_PROGRESS = """
CREATE VIEW meshsync_coklit_progress AS
WITH per_partition AS (
    SELECT partition, count(*) AS voters,
           count(v.result) AS dicoklit,
           count(*) FILTER (WHERE v.result = 'MS') AS ms,
           count(*) FILTER (WHERE v.result = 'TMS') AS tms,
           count(*) FILTER (WHERE v.result = 'ubah') AS ubah,
           count(*) FILTER (WHERE v.result = 'baru') AS baru,
           count(*) FILTER (WHERE conflict) AS conflicts,
           max(updated_at) FILTER (WHERE v.result IS NOT NULL) AS last_result_at
    FROM meshsync_records
    CROSS JOIN LATERAL (SELECT coalesce(fields->>'coklit',
        CASE WHEN fields->>'status' <> 'MS' THEN fields->>'status' END) AS result) v
    WHERE collection = 'voters' AND NOT deleted
    GROUP BY partition)
SELECT array_to_string(p.segs[1:cardinality(p.segs) - u.up], '/') COLLATE "C" AS prefix,
       u.up AS up,
       cardinality(p.segs) - u.up AS level,
       sum(a.voters)::bigint AS voters,
       sum(a.dicoklit)::bigint AS dicoklit,
       (sum(a.voters) - sum(a.dicoklit))::bigint AS belum,
       sum(a.ms)::bigint AS ms,
       sum(a.tms)::bigint AS tms,
       sum(a.ubah)::bigint AS ubah,
       sum(a.baru)::bigint AS baru,
       sum(a.conflicts)::bigint AS conflicts,
       max(a.last_result_at) AS last_result_at
FROM per_partition a
CROSS JOIN LATERAL (SELECT string_to_array(a.partition, '/') AS segs) p
CROSS JOIN LATERAL generate_series(0, cardinality(p.segs) - 1) AS u(up)
GROUP BY 1, 2, 3
"""

MIGRATIONS: list[str | tuple[str, ...]] = [
    # 1: initial schema, mirroring the SQLite store's, plus the SQL-readable record
    # fields and the views. Feeds get a bigint id so changes carry 8 bytes, not 40.
    # `hlc` is numeric: an HLC is an unsigned 64-bit integer, beyond bigint.
    # `version` counts writes of a record row (optimistic concurrency control).
    # Fork evidence is unique on the SHA-256 of the refused body (`other_hash`):
    # a body may be megabytes, too large for a btree entry.
    """
    CREATE TABLE meshsync_meta (
        name text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
    CREATE TABLE meshsync_feeds (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        author bytea NOT NULL, partition text COLLATE "C" NOT NULL,
        head_seq bigint NOT NULL CHECK (head_seq >= 1), head_hash bytea NOT NULL,
        UNIQUE (author, partition));
    CREATE TABLE meshsync_changes (
        feed bigint NOT NULL REFERENCES meshsync_feeds (id),
        seq bigint NOT NULL CHECK (seq >= 1), hash bytea NOT NULL,
        hlc numeric(20, 0) NOT NULL, body bytea NOT NULL, sig bytea NOT NULL,
        invalid text COLLATE "C", PRIMARY KEY (feed, seq));
    CREATE TABLE meshsync_records (
        collection text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
        partition text COLLATE "C" NOT NULL, state bytea NOT NULL, fields jsonb,
        deleted boolean NOT NULL, conflict boolean NOT NULL,
        version bigint NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (collection, key, partition));
    CREATE INDEX meshsync_records_partition ON meshsync_records (partition, collection)
        INCLUDE (deleted, conflict);
    CREATE INDEX meshsync_records_conflict ON meshsync_records (collection) WHERE conflict;
    CREATE TABLE meshsync_forks (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        author bytea NOT NULL, partition text COLLATE "C" NOT NULL, seq bigint NOT NULL,
        held_hash bytea NOT NULL, other_body bytea NOT NULL, other_hash bytea NOT NULL,
        other_sig bytea NOT NULL, note text COLLATE "C" NOT NULL,
        UNIQUE (author, partition, seq, other_hash));
    CREATE TABLE meshsync_refusals (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        author bytea NOT NULL, partition text COLLATE "C" NOT NULL, seq bigint NOT NULL,
        stage text COLLATE "C" NOT NULL, reason text COLLATE "C" NOT NULL,
        source text COLLATE "C" NOT NULL,
        at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE meshsync_credentials (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        digest bytea NOT NULL UNIQUE, blob bytea NOT NULL);
    """
    + _RECORDS_CURRENT + ";" + _PROGRESS,
    # 2: changes keep `feed` = meshsync_feeds.id without a foreign key. The store
    # inserts or locks (FOR UPDATE) a feed's row in the same flush, before copying
    # its changes in, and never deletes feeds, so the key guarded nothing; its
    # per-row check (an index lookup and a row lock per change) was about a third of
    # the server's cost of ingesting a change.
    "ALTER TABLE meshsync_changes DROP CONSTRAINT IF EXISTS meshsync_changes_feed_fkey",
    # 3: quarantined changes (meshsync.replica.quarantine): taken out of their feed after
    # their author's revocation was learned, kept as evidence. Unique on the hash,
    # not the body (a body may be megabytes).
    """
    CREATE TABLE meshsync_quarantine (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        author bytea NOT NULL, partition text COLLATE "C" NOT NULL, seq bigint NOT NULL,
        hash bytea NOT NULL, body bytea NOT NULL, sig bytea NOT NULL,
        reason text COLLATE "C" NOT NULL, at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (author, partition, seq, hash))
    """,
    # 4: coklit visits: "dicoklit X dari Y" with MS/TMS/ubah/baru counts per TPS,
    # kampung and distrik (docs/central-sql.md).
    _COKLIT_PROGRESS,
    # 5: evidence is capped per author and in total (store.base.EvidenceLimits); what is
    # past a cap is only counted here. Refusals are counted per author by index.
    """
    CREATE TABLE meshsync_evidence_counts (
        kind text COLLATE "C" NOT NULL, author bytea NOT NULL, count bigint NOT NULL,
        PRIMARY KEY (kind, author));
    CREATE INDEX meshsync_refusals_author ON meshsync_refusals (author)
    """,
    # 6: a refusal records the refused change's hash and is kept once per (author,
    # partition, seq, hash, stage): importing one refused bundle twice counted every
    # refusal twice. Duplicates kept before are dropped (rows without a hash: once per
    # author, partition, seq and stage).
    """
    ALTER TABLE meshsync_refusals ADD COLUMN hash bytea NOT NULL DEFAULT ''::bytea;
    DELETE FROM meshsync_refusals AS r USING meshsync_refusals AS first
        WHERE r.author = first.author AND r.partition = first.partition
        AND r.seq = first.seq AND r.hash = first.hash AND r.stage = first.stage
        AND r.id > first.id;
    CREATE UNIQUE INDEX meshsync_refusals_once ON meshsync_refusals
        (author, partition, seq, hash, stage)
    """,
    # 7: progress counts kept up to date on write, and the KPU views read from them
    # (meshsync.store.pg_progress; statements listed one by one).
    pg_progress.MIGRATION,
]

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS meshsync_schema (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now())
"""


def _statements(script: str | tuple[str, ...]) -> list[str]:
    # A string migration holds no ';' inside a statement (no functions, no literals
    # with one); a migration that does is a tuple of its statements.
    if isinstance(script, tuple):
        return list(script)
    return [s.strip() for s in script.split(";") if s.strip()]


def schema_version(conn: psycopg.Connection[TupleRow]) -> int:
    """The highest applied migration number (0 if none), read in the current transaction."""
    row = conn.execute("SELECT coalesce(max(version), 0) FROM meshsync_schema").fetchone()
    assert row is not None
    return int(row[0])


def migrate(conn: psycopg.Connection[TupleRow]) -> int:
    """Bring the schema up to date; return the applied migration number.

    ``conn`` must be in autocommit mode with no transaction open. Each pending
    migration runs in its own transaction holding the advisory lock
    :data:`MIGRATION_LOCK`, after re-reading the version under that lock, so
    processes that start together apply each migration once and wait for each
    other. Raises :class:`StorageError` if the database is newer than this code;
    psycopg errors propagate to the caller.
    """
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            conn.execute(_BOOTSTRAP)
            version = schema_version(conn)
            if version > len(MIGRATIONS):
                raise StorageError(
                    f"database schema version {version} is newer than this meshsync "
                    f"({len(MIGRATIONS)}); upgrade meshsync")
            if version == len(MIGRATIONS):
                return version
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement.encode())
            conn.execute("INSERT INTO meshsync_schema (version) VALUES (%s)", [version + 1])
