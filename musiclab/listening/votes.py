"""The vote store: A/B listening votes in one SQLite file (WAL mode, versioned schema).

The file is ``$MUSICLAB_DB`` or, by default, ``~/.local/share/musiclab/votes.sqlite``
(``$XDG_DATA_HOME`` is honoured); only the server's environment sets it, never the browser.
It is created on first use; ``PRAGMA user_version`` holds the schema version and
:data:`MIGRATIONS` brings older files up to date. Each vote keeps the time (UTC), both
contestants (model, settings, random seed), the seed's sha256, the vote, an anonymous
listener id and the schema version. Seed music itself is kept only when the listener opts in.

Every call opens its own short-lived connection, so one :class:`VoteStore` may be shared by
threads (Streamlit sessions) and processes; concurrent writers wait for each other
(``busy_timeout``) rather than fail. All SQL is parameterised.
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
from typing import TYPE_CHECKING

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
            id INTEGER PRIMARY KEY,
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
            midi BLOB NOT NULL,
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
    """The vote file cannot be opened or written (permissions, full disk, not a database)."""


def default_db_path() -> Path:
    """``$MUSICLAB_DB``, else ``$XDG_DATA_HOME/musiclab/votes.sqlite`` (``~/.local/share`` by default)."""
    env = os.environ.get("MUSICLAB_DB")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "musiclab" / "votes.sqlite"


class VoteStore:
    """Votes in the SQLite file at ``path`` (default :func:`default_db_path`), made on first use."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VoteStore({str(self.path)!r})"

    def _fail(self, e: BaseException) -> StoreError:
        return StoreError(
            f"could not use the vote file {self.path} ({e}); votes need a writable file on a disk with "
            "free space: fix its folder's permissions or free space, or point MUSICLAB_DB at another file"
        )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection (explicit BEGIN for multi-statement writes)."""
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")  # per connection; WAL-safe, a crash may lose the last vote
            if not self._ready:
                with self._lock:
                    self._setup(conn)
                    self._ready = True
            yield conn
        except sqlite3.IntegrityError as e:
            raise VoteError(f"vote refused: {e}") from None
        except (sqlite3.Error, OSError) as e:
            raise self._fail(e) from None
        finally:
            if conn is not None:
                conn.close()

    def _setup(self, conn: sqlite3.Connection) -> None:
        """WAL mode + schema migrations up to :data:`SCHEMA_VERSION` (idempotent)."""
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("the file system does not support WAL mode")
        conn.execute("BEGIN IMMEDIATE")  # one migrator at a time, across processes
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the vote file {self.path} has schema version {version}, but this musiclab reads up "
                    f"to version {SCHEMA_VERSION}: upgrade musiclab or point MUSICLAB_DB at another file"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[v]:
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        with self._connect() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def record(self, rnd: Round, vote: str, voter: str, seed_midi: bytes | None = None) -> int:
        """Store ``vote`` (one of :data:`VOTES`) on ``rnd``; returns the new row id.

        ``seed_midi`` (the seed file's bytes) is stored only when given, i.e. when the
        listener opted in; it must hash to ``rnd.seed_sha``. Raises :class:`VoteError` for a
        failed round, an unknown vote or voter id, or a second vote on the same round, and
        :class:`StoreError` when the file cannot be written.
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
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM votes WHERE round_id = ?", (rnd.round_id,)).fetchone():
                    raise VoteError("this round already has a vote; start a new round to vote again")
                cur = conn.execute(
                    f"INSERT INTO votes ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * len(row))})", row
                )
                if seed_midi is not None:
                    conn.execute(
                        "INSERT OR IGNORE INTO seeds (sha256, midi, created_at) VALUES (?, ?, ?)",
                        (rnd.seed_sha, sqlite3.Binary(seed_midi), now),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return int(cur.lastrowid)

    def votes(self) -> list[dict]:
        """Every vote, oldest first, as dicts with the :data:`COLUMNS` keys (settings parsed)."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM votes ORDER BY id").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["settings_a"], d["settings_b"] = json.loads(d["settings_a"]), json.loads(d["settings_b"])
            out.append(d)
        return out

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    def seed_midi(self, sha256: str) -> bytes | None:
        """The shared seed file with this hash, or None if it was never shared."""
        with self._connect() as conn:
            row = conn.execute("SELECT midi FROM seeds WHERE sha256 = ?", (sha256,)).fetchone()
        return bytes(row[0]) if row else None

    def export_csv(self) -> str:
        """All votes as CSV text (header = :data:`COLUMNS`; settings as JSON strings)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)
        with self._connect() as conn:
            for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM votes ORDER BY id"):
                w.writerow(list(r))
        return buf.getvalue()
