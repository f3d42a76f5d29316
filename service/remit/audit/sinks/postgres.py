"""A PostgreSQL table (psycopg 3): one row per chained entry, append-only.

``REMIT_AUDIT_SINK=postgresql://USER@HOST/DB`` (or ``postgres://``). The table's columns are
the entry's chain fields and the fields an auditor filters on; ``entry`` is the whole entry
as jsonb, the source of truth the verifier re-hashes (the columns are copies for indexes).
``id`` is the arrival order of the interleaved writers. A group (one strict group commit or
one best-effort batch) is one transaction, so a strict answer is returned only once its
entry is committed.

The service's role needs INSERT and SELECT on the table and nothing else
(:func:`ddl` with a role prints the GRANTs); a trigger refuses UPDATE, DELETE and TRUNCATE
even to the table's owner, so an edit needs the trigger dropped first, which the chain and
the anchors then show.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from remit.audit.entry import GENESIS

if TYPE_CHECKING:
    import psycopg

TABLE = "remit_decision_log"
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_SCHEMA = f"""\
-- remit decision log (REMIT_AUDIT_SINK=postgresql://...): run by the table's owner
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- arrival order
    writer text NOT NULL,
    seq bigint NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    time timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('decision', 'anchor', 'gap')),
    decision_id text NOT NULL DEFAULT '',
    council text NOT NULL DEFAULT '',
    decision text NOT NULL DEFAULT '',
    effect text NOT NULL DEFAULT '',
    rule_id text NOT NULL DEFAULT '',
    actor_id text NOT NULL DEFAULT '',
    case_ref_hmac text NOT NULL DEFAULT '',
    policy_version text NOT NULL DEFAULT '',
    deviation boolean NOT NULL DEFAULT false,
    review boolean NOT NULL DEFAULT false,
    entry jsonb NOT NULL,
    UNIQUE (writer, seq)
);
CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (time);
CREATE INDEX IF NOT EXISTS {TABLE}_case ON {TABLE} (case_ref_hmac) WHERE case_ref_hmac <> '';
CREATE INDEX IF NOT EXISTS {TABLE}_actor ON {TABLE} (actor_id, time);
CREATE INDEX IF NOT EXISTS {TABLE}_review ON {TABLE} (time) WHERE review;
CREATE INDEX IF NOT EXISTS {TABLE}_anchors ON {TABLE} (writer, id) WHERE kind = 'anchor';
CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the decision log is append-only (% refused)', TG_OP;
END $$;
DROP TRIGGER IF EXISTS {TABLE}_no_change ON {TABLE};
CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only();
DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE};
CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only();
"""


def ddl(role: str = "") -> str:
    """The table, its indexes and its append-only triggers; with ``role``, the grants that
    give the service's role INSERT and SELECT on it and nothing more."""
    if not role:
        return _SCHEMA
    if not _ROLE.fullmatch(role):
        raise ValueError(f"role {role!r}: lower-case letters, digits and '_', at most 63")
    return (
        _SCHEMA + f"-- the service's role: append and read, never change or remove\n"
        f"REVOKE ALL ON {TABLE} FROM {role};\n"
        f"GRANT SELECT, INSERT ON {TABLE} TO {role};\n"
    )


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


# the table's name is a constant; every value is a parameter
_INSERT = (
    f"INSERT INTO {TABLE} (writer, seq, prev_hash, hash, time, kind, decision_id, council, "  # noqa: S608
    "decision, effect, rule_id, actor_id, case_ref_hmac, policy_version, deviation, review, "
    "entry) VALUES (%s, %s, %s, %s, %s::timestamptz, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s, %s::jsonb)"
)


def _row(line: str) -> tuple[Any, ...]:
    e = json.loads(line)
    kind = "anchor" if "anchor" in e else "gap" if "gap" in e else "decision"
    return (
        str(e["writer"]),
        int(e["seq"]),
        str(e["prev_hash"]),
        str(e["hash"]),
        str(e["time"]),
        kind,
        *(
            str(e.get(k, ""))
            for k in (
                "decision_id",
                "council",
                "decision",
                "effect",
                "rule_id",
                "actor_id",
                "case_ref_hmac",
                "policy_version",
            )
        ),
        e.get("deviation") is True,
        e.get("review") is True,
        line,
    )


class PostgresSink:
    """Rows in :data:`TABLE`; every group is one transaction, committed before return.
    A broken connection is dropped and opened again on the next write (the write that met
    it fails: strict mode refuses its decisions, best-effort counts them in a gap)."""

    def __init__(self, url: str, connect_timeout: int = 5) -> None:
        self.url = url
        self._timeout = connect_timeout
        self._lock = threading.Lock()  # one connection; a transaction never interleaves
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            self._connection()  # fail at start, not at the first decision

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=self._timeout,
                application_name="remit-audit",
            )
        return self._conn

    def _run(self, work: Any) -> Any:
        import psycopg

        with self._lock:
            try:
                return work(self._connection())
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise

    def last(self) -> tuple[int, str]:
        def work(conn: psycopg.Connection[Any]) -> tuple[int, str]:
            sql = f"SELECT seq, hash FROM {TABLE} ORDER BY id DESC LIMIT 1"  # noqa: S608
            row = conn.execute(sql).fetchone()
            return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

        result: tuple[int, str] = self._run(work)
        return result

    def append(self, line: str) -> None:
        self.append_many([line])

    def append_many(self, lines: list[str]) -> None:
        """One transaction for the group: all rows committed, or none."""
        rows = [_row(line) for line in lines]

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_INSERT, rows)

        self._run(work)

    def recent_anchors(self, limit: int = 5000) -> dict[str, tuple[int, str]]:
        """Each writer's latest anchor (seq, hash) among the table's last ``limit`` rows."""

        def work(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
            rows = conn.execute(
                f"SELECT DISTINCT ON (writer) writer, seq, hash FROM {TABLE} "  # noqa: S608
                f"WHERE kind = 'anchor' AND id > (SELECT coalesce(max(id), 0) FROM {TABLE}) - %s "
                "ORDER BY writer, id DESC",
                (limit,),
            ).fetchall()
            return {str(w): (int(s), str(h)) for w, s, h in rows}

        found: dict[str, tuple[int, str]] = self._run(work)
        return found

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None


def entries(url: str) -> Iterator[str]:
    """Every row's entry (as JSON text) in arrival order, streamed through a server-side
    cursor (constant memory however large the table)."""
    import psycopg

    with (
        psycopg.connect(url, connect_timeout=5, application_name="remit-audit-read") as conn,
        conn.cursor(name="remit_audit_entries") as cur,
    ):
        cur.itersize = 5000
        cur.execute(f"SELECT entry::text FROM {TABLE} ORDER BY id")  # noqa: S608 (constant)
        for (text,) in cur:
            yield str(text)


def apply_ddl(url: str, role: str = "") -> None:
    """Create the table (idempotent) and, with ``role``, grant it INSERT and SELECT."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(ddl(role).encode())
