"""The vote store: schema + migrations, concurrent writers, CSV export, refusals, unwritable files."""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest

from musiclab.listening.ab import Contestant, Round
from musiclab.listening.votes import COLUMNS, SCHEMA_VERSION, StoreError, VoteError, VoteStore, default_db_path

SEED = b"MThd-not-really-a-midi-file-but-bytes-to-hash" * 3
SETTINGS = {"temperature": 0.8, "top_k": 0, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.1, "key_lock": False}


def a_round(i: int = 0, failed: bool = False, seed: bytes = SEED) -> Round:
    a = Contestant("lstm", dict(SETTINGS), 1000 + i, midi=b"take-a")
    b = Contestant("bilstm", {**SETTINGS, "temperature": 1.2}, 2000 + i, midi=None if failed else b"take-b")
    if failed:
        b.error = "the seed excerpt has no notes the model can read"
    return Round(a, b, hashlib.sha256(seed).hexdigest(), "test seed", 4.0, 5.0)


def test_created_on_first_use_with_wal_and_version(tmp_path):
    path = tmp_path / "deeper" / "votes.sqlite"
    store = VoteStore(path)
    assert not path.exists()  # nothing happens until first use
    assert store.count() == 0
    assert path.exists()
    assert store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [r[1] for r in conn.execute("PRAGMA table_info(votes)")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert cols == COLUMNS
    assert tables == {"votes", "seeds"}
    store.record(a_round(), "a", "listener1")
    assert VoteStore(path).count() == 1  # a second store on the same file: no re-migration, data kept


def test_empty_v0_file_is_migrated_and_newer_file_refused(tmp_path):
    old = tmp_path / "old.sqlite"
    sqlite3.connect(old).close()  # an existing file at schema version 0
    assert VoteStore(old).schema_version() == SCHEMA_VERSION
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        VoteStore(newer).count()


def test_vote_row_has_every_field_and_no_music(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    rnd = a_round(7)
    before = datetime.now().astimezone()
    store.record(rnd, "tie", "abc123")
    (row,) = store.votes()
    when = datetime.fromisoformat(row["created_at"])
    assert when.utcoffset() == timedelta(0) and abs(when - before) < timedelta(seconds=30)
    assert (row["model_a"], row["model_b"], row["vote"], row["voter"]) == ("lstm", "bilstm", "tie", "abc123")
    assert row["settings_a"] == SETTINGS and row["settings_b"]["temperature"] == 1.2
    assert (row["random_seed_a"], row["random_seed_b"]) == (1007, 2007)
    assert row["seed_sha256"] == hashlib.sha256(SEED).hexdigest()
    assert row["round_id"] == rnd.round_id and row["blind"] == 1
    assert row["schema_version"] == SCHEMA_VERSION
    assert store.seed_midi(rnd.seed_sha) is None
    assert all(SEED not in f.read_bytes() for f in tmp_path.glob("v.sqlite*"))


def test_seed_music_is_kept_only_with_opt_in(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    rnd = a_round()
    with pytest.raises(VoteError, match="does not match"):
        store.record(rnd, "a", "x", seed_midi=b"some other file")
    assert store.count() == 0
    store.record(rnd, "a", "x", seed_midi=SEED)
    assert store.seed_midi(rnd.seed_sha) == SEED
    assert any(SEED in f.read_bytes() for f in tmp_path.glob("v.sqlite*"))  # the same check finds it


def test_eight_threads_times_250_votes_all_stored(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")  # one store shared, like Streamlit sessions share it
    errors = []

    def voter(t: int) -> None:
        try:
            for i in range(250):
                store.record(a_round(t * 1000 + i), ("a", "b", "tie", "both_bad")[i % 4], f"thread{t}")
        except Exception as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=voter, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    rows = store.votes()
    assert len(rows) == 2000 == store.count()
    assert len({r["round_id"] for r in rows}) == 2000
    assert sorted({r["random_seed_a"] for r in rows}) == sorted(
        1000 + t * 1000 + i for t in range(8) for i in range(250)
    )
    for t in range(8):
        assert sum(r["voter"] == f"thread{t}" for r in rows) == 250


def test_csv_export_has_every_vote(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    assert store.export_csv().strip() == ",".join(COLUMNS)
    for i, v in enumerate(["a", "b", "both_bad"]):
        store.record(a_round(i), v, "csvtester")
    rows = list(csv.DictReader(io.StringIO(store.export_csv())))
    assert [r["vote"] for r in rows] == ["a", "b", "both_bad"]
    assert list(rows[0]) == COLUMNS
    assert rows[2]["model_b"] == "bilstm" and rows[2]["random_seed_a"] == "1002"
    assert '"temperature": 1.2' in rows[0]["settings_b"]


def test_refused_votes_store_nothing(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    with pytest.raises(VoteError, match="generation failed.*no notes"):
        store.record(a_round(failed=True), "a", "x")
    with pytest.raises(VoteError, match="expected one of a, b, tie, both_bad"):
        store.record(a_round(), "A", "x")
    with pytest.raises(VoteError, match="listener id"):
        store.record(a_round(), "a", "x'); DROP TABLE votes; --")
    assert store.count() == 0
    rnd = a_round()
    store.record(rnd, "b", "x")
    with pytest.raises(VoteError, match="already has a vote"):
        store.record(rnd, "a", "x")
    assert [r["vote"] for r in store.votes()] == ["b"]


@pytest.mark.parametrize("kind", ["parent-is-a-file", "path-is-a-folder", "not-a-database"])
def test_unwritable_path_gives_clear_error(tmp_path, kind):
    blocker = tmp_path / "blocker"
    if kind == "parent-is-a-file":
        blocker.write_text("a file, not a folder")
        path = blocker / "votes.sqlite"
    elif kind == "path-is-a-folder":
        path = tmp_path / "folder.sqlite"
        path.mkdir()
    else:
        path = tmp_path / "junk.sqlite"
        path.write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(StoreError) as e:
        VoteStore(path).record(a_round(), "a", "x")
    msg = str(e.value)
    assert str(path) in msg and "MUSICLAB_DB" in msg and "writable" in msg


FULL_DISK = """
import importlib.util, resource, signal, sys, uuid
from types import SimpleNamespace as NS
spec = importlib.util.spec_from_file_location("votes", {votes!r})  # alone: no torch import
votes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(votes)
store = votes.VoteStore({path!r})
store.count()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (80_000, 80_000))
side = NS(model="lstm", settings={{"temperature": 1.0}}, random_seed=1)
n = 0
try:
    while n < 100_000:
        rnd = NS(failed=False, round_id=uuid.uuid4().hex, blind=True, a=side, b=side, seed_sha="0" * 64,
                 seed_seconds=4.0, seconds=5.0)
        store.record(rnd, "a", "x" * 64)
        n += 1
except votes.StoreError as e:
    print(n, e)
"""


def test_full_disk_gives_clear_error_and_keeps_earlier_votes(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk, in a child process."""
    import musiclab.listening.votes

    path = tmp_path / "v.sqlite"
    code = FULL_DISK.format(votes=musiclab.listening.votes.__file__, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, msg = out.stdout.split(" ", 1)
    assert int(n) > 20 and "could not use the vote file" in msg and "free space" in msg
    assert VoteStore(path).count() == int(n)


def test_default_store_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICLAB_DB", str(tmp_path / "x.sqlite"))
    assert VoteStore().target == tmp_path / "x.sqlite" and VoteStore().dialect.name == "sqlite"
    monkeypatch.setenv("MUSICLAB_DB", "postgresql://musiclab:s3cret@127.0.0.1:9/votes")
    pg = VoteStore()
    assert pg.dialect.name == "postgresql" and "s3cret" not in repr(pg) and "***" in pg.where
    with pytest.raises(StoreError, match="could not reach the vote database .*your round is kept") as e:
        pg.count()  # nothing listens on port 9
    assert "s3cret" not in str(e.value)
    monkeypatch.delenv("MUSICLAB_DB")
    assert VoteStore().target == default_db_path()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "musiclab" / "votes.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert str(default_db_path()).endswith(".local/share/musiclab/votes.sqlite")
