"""The vote store: A/B listening votes in SQLite (embedded default) or PostgreSQL (several servers).

``$MUSICLAB_DB`` picks it: a ``postgresql://user:password@host:port/db`` URL uses PostgreSQL
through psycopg, so several app servers share one vote store; anything else is the path of an
SQLite file (WAL mode), by default ``~/.local/share/musiclab/votes.sqlite`` (``$XDG_DATA_HOME``
is honoured). Only the server's environment sets it, never the browser. Both run the same
schema and migrations (:data:`MIGRATIONS`); what differs between them is in :class:`Dialect`
(placeholder style, the id column, the blob type, where the schema version lives, the
migration lock). Each vote keeps the time (UTC), both contestants (model, settings, random
seed), the seed's sha256, the vote, an anonymous listener id and the schema version. Seed
music itself is kept only when the listener opts in.

Every call opens its own short-lived connection, so one :class:`VoteStore` may be shared by
threads (Streamlit sessions), processes and servers; concurrent writers wait for each other
rather than fail, and one round takes one vote (a UNIQUE column). All SQL is parameterised.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .ab import Round

SCHEMA_VERSION = 1
VOTES = ("a", "b", "tie", "both_bad")  # A better, B better, equally good, both bad
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer's lock
VOTER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# version -> statements taking a file from version-1 to version (run in one transaction)
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE votes (
            id {id},
            created_at TEXT NOT NULL,              -- ISO 8601, UTC
            round_id TEXT NOT NULL UNIQUE,         -- one vote per round
            voter TEXT NOT NULL,                   -- anonymous per-browser id
            vote TEXT NOT NULL CHECK (vote IN ('a', 'b', 'tie', 'both_bad')),
            blind INTEGER NOT NULL,                -- 1 if the names were hidden when voting
            model_a TEXT NOT NULL, settings_a TEXT NOT NULL, random_seed_a INTEGER,
            model_b TEXT NOT NULL, settings_b TEXT NOT NULL, random_seed_b INTEGER,
            seed_sha256 TEXT NOT NULL,             -- sha256 of the seed MIDI bytes
            seed_seconds REAL NOT NULL,            -- seed excerpt length, s
            seconds REAL NOT NULL,                 -- continuation length, s
            schema_version INTEGER NOT NULL
        )""",
        "CREATE INDEX votes_models ON votes (model_a, model_b)",
        """CREATE TABLE seeds (                    -- only seeds a listener chose to share
            sha256 TEXT PRIMARY KEY,
            midi {blob} NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ],
}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))

COLUMNS = [
    "id", "created_at", "round_id", "voter", "vote", "blind",
    "model_a", "settings_a", "random_seed_a", "model_b", "settings_b", "random_seed_b",
    "seed_sha256", "seed_seconds", "seconds", "schema_version",
]  # fmt: skip


class VoteError(ValueError):
    """A vote that is refused (failed round, unknown vote, repeated vote); nothing was stored."""


class StoreError(RuntimeError):
    """The vote store cannot be opened or written (permissions, full disk, a database that is down)."""


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/musiclab/votes.sqlite`` (``~/.local/share`` by default)."""
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "musiclab" / "votes.sqlite"


def is_postgres(target: str) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """A database URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Dialect(NamedTuple):
    """What SQLite and PostgreSQL need differently; everything else is shared SQL."""

    name: str
    param: str  # placeholder: "?" or "%s"
    types: dict  # {id} and {blob} in MIGRATIONS

    def sql(self, text: str) -> str:
        return text.replace("?", self.param) if self.param != "?" else text


SQLITE = Dialect("sqlite", "?", {"id": "INTEGER PRIMARY KEY", "blob": "BLOB"})
POSTGRES = Dialect("postgresql", "%s", {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA"})


class VoteStore:
    """Votes in ``target`` (an SQLite path or a PostgreSQL URL; default ``$MUSICLAB_DB``, else
    :func:`default_db_path`), with the schema made or migrated on first use."""

    def __init__(self, target: str | os.PathLike | None = None):
        if target is None:
            from ..settings import current  # here: this module also runs alone, without the package (tests)

            target = current().db or default_db_path()
        self.dialect = POSTGRES if is_postgres(str(target)) else SQLITE
        self.target = str(target) if self.dialect is POSTGRES else Path(target).expanduser()
        self._ready = False
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return redact(self.target) if self.dialect is POSTGRES else str(self.target)

    def __repr__(self) -> str:
        return f"VoteStore({self.where!r})"

    def _fail(self, e: BaseException) -> StoreError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if self.dialect is POSTGRES:
            return StoreError(
                f"could not reach the vote database {self.where} ({reason}); your round is kept: vote again "
                "when the database is back (or ask whoever runs this server)"
            )
        return StoreError(
            f"could not use the vote file {self.where} ({reason}); votes need a writable file on a disk with "
            "free space: fix its folder's permissions or free space, or point MUSICLAB_DB at another file"
        )

    # ---- connections and transactions ----
    def _open(self):
        if self.dialect is POSTGRES:
            import psycopg
            from psycopg.rows import dict_row

            return psycopg.connect(self.target, autocommit=True, connect_timeout=5, row_factory=dict_row)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.target, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")  # per connection; WAL-safe, a crash may lose the last vote
        return conn

    def _errors(self) -> tuple[tuple, tuple]:
        """(integrity errors, other store errors) of the driver in use."""
        if self.dialect is POSTGRES:
            import psycopg

            return (psycopg.IntegrityError,), (psycopg.Error, OSError)
        return (sqlite3.IntegrityError,), (sqlite3.Error, OSError)

    @contextmanager
    def _connect(self) -> Iterator:
        """A fresh autocommit connection; the schema is checked once per store."""
        integrity, other = self._errors()
        conn = None
        try:
            conn = self._open()
            if not self._ready:
                with self._lock:
                    self._setup(conn)
                    self._ready = True
            yield conn
        except integrity as e:
            raise VoteError(f"vote refused: {str(e).splitlines()[0]}") from None
        except other as e:
            raise self._fail(e) from None
        finally:
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # closing a connection to a dead server must not hide the first error
                    pass

    @contextmanager
    def _transaction(self, conn) -> Iterator:
        """One writer at a time: SQLite's BEGIN IMMEDIATE, PostgreSQL's transaction (row locks)."""
        if self.dialect is POSTGRES:
            with conn.transaction():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _q(self, conn, text: str, args: tuple = ()):
        return conn.execute(self.dialect.sql(text), args)

    # ---- schema ----
    def _version(self, conn) -> int:
        if self.dialect is SQLITE:
            return conn.execute("PRAGMA user_version").fetchone()[0]
        self._q(conn, "CREATE TABLE IF NOT EXISTS musiclab_schema (version INTEGER NOT NULL)")
        row = self._q(conn, "SELECT MAX(version) AS v FROM musiclab_schema").fetchone()
        return int(row["v"] or 0)

    def _set_version(self, conn, version: int) -> None:
        if self.dialect is SQLITE:
            conn.execute(f"PRAGMA user_version = {int(version)}")
        else:
            self._q(conn, "DELETE FROM musiclab_schema")
            self._q(conn, "INSERT INTO musiclab_schema (version) VALUES (?)", (int(version),))

    def _setup(self, conn) -> None:
        """Schema migrations up to :data:`SCHEMA_VERSION` (idempotent; one migrator at a time)."""
        if self.dialect is SQLITE and conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("the file system does not support WAL mode")
        with self._transaction(conn):
            if self.dialect is POSTGRES:
                self._q(conn, "SELECT pg_advisory_xact_lock(7275921)")  # migrations of other servers wait here
            version = self._version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the vote store {self.where} has schema version {version}, but this musiclab reads up "
                    f"to version {SCHEMA_VERSION}: upgrade musiclab or point MUSICLAB_DB elsewhere"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[v]:
                    self._q(conn, stmt.format(**self.dialect.types))
            if version != SCHEMA_VERSION:
                self._set_version(conn, SCHEMA_VERSION)

    def schema_version(self) -> int:
        with self._connect() as conn:
            return self._version(conn)

    # ---- votes ----
    def record(self, rnd: Round, vote: str, voter: str, seed_midi: bytes | None = None) -> int:
        """Store ``vote`` (one of :data:`VOTES`) on ``rnd``; returns the new row id.

        ``seed_midi`` (the seed file's bytes) is stored only when given, i.e. when the
        listener opted in; it must hash to ``rnd.seed_sha``. Raises :class:`VoteError` for a
        failed round, an unknown vote or voter id, or a second vote on the same round, and
        :class:`StoreError` when the store cannot be written.
        """
        if vote not in VOTES:
            raise VoteError(f"vote {vote!r} is not accepted; expected one of {', '.join(VOTES)}")
        if not isinstance(voter, str) or not VOTER_RE.fullmatch(voter):
            raise VoteError(f"listener id {voter!r} is not accepted; expected 1-64 letters, digits, '-' or '_'")
        if rnd.failed:
            raise VoteError(f"no vote stored: this round's generation failed ({rnd.error}); start a new round")
        if seed_midi is not None and hashlib.sha256(seed_midi).hexdigest() != rnd.seed_sha:
            raise VoteError("the shared seed file does not match the round's seed hash; nothing stored")
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        row = (
            now, rnd.round_id, voter, vote, int(bool(rnd.blind)),
            rnd.a.model, json.dumps(rnd.a.settings, sort_keys=True), rnd.a.random_seed,
            rnd.b.model, json.dumps(rnd.b.settings, sort_keys=True), rnd.b.random_seed,
            rnd.seed_sha, float(rnd.seed_seconds), float(rnd.seconds), SCHEMA_VERSION,
        )  # fmt: skip
        with self._connect() as conn, self._transaction(conn):
            if self._q(conn, "SELECT 1 AS one FROM votes WHERE round_id = ?", (rnd.round_id,)).fetchone():
                raise VoteError("this round already has a vote; start a new round to vote again")
            cur = self._q(
                conn,
                f"INSERT INTO votes ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * len(row))}) RETURNING id",
                row,
            )
            new_id = int(cur.fetchone()["id"])
            if seed_midi is not None:
                self._q(
                    conn,
                    "INSERT INTO seeds (sha256, midi, created_at) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                    (rnd.seed_sha, bytes(seed_midi), now),
                )
            return new_id

    def votes(self) -> list[dict]:
        """Every vote, oldest first, as dicts with the :data:`COLUMNS` keys (settings parsed)."""
        with self._connect() as conn:
            rows = self._q(conn, f"SELECT {', '.join(COLUMNS)} FROM votes ORDER BY id").fetchall()
        out = []
        for r in rows:
            d = {c: r[c] for c in COLUMNS}
            d["settings_a"], d["settings_b"] = json.loads(d["settings_a"]), json.loads(d["settings_b"])
            out.append(d)
        return out

    def count(self) -> int:
        with self._connect() as conn:
            return int(self._q(conn, "SELECT COUNT(*) AS n FROM votes").fetchone()["n"])

    def seed_midi(self, sha256: str) -> bytes | None:
        """The shared seed file with this hash, or None if it was never shared."""
        with self._connect() as conn:
            row = self._q(conn, "SELECT midi FROM seeds WHERE sha256 = ?", (sha256,)).fetchone()
        return bytes(row["midi"]) if row else None

    def export_csv(self) -> str:
        """All votes as CSV text (header = :data:`COLUMNS`; settings as JSON strings)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)
        with self._connect() as conn:
            for r in self._q(conn, f"SELECT {', '.join(COLUMNS)} FROM votes ORDER BY id").fetchall():
                w.writerow([r[c] for c in COLUMNS])
        return buf.getvalue()
