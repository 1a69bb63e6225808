"""The vote store on a real PostgreSQL server: two app processes voting at once, and a server that dies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_ab_page import new_round, texts

from musiclab.listening.votes import VoteStore

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "ab.py"
THREADS, VOTES_EACH = 4, 250  # per process; two processes = 8 x 250 votes
PAGE_VOTES = 4  # per process, cast meanwhile through its A/B page

WRITER = """
import random, sys, threading
from streamlit.testing.v1 import AppTest
from musiclab.listening.ab import Contestant, Round
from musiclab.listening.votes import VoteStore

store, proc = VoteStore(sys.argv[1]), int(sys.argv[2])
models = ["lstm", "bigru", "bilstm", "transformer-remi"]
ok, errors = [], []

go = threading.Event()  # set once the page's first round is made, so both vote at once

def voter(t):
    go.wait()
    rng = random.Random(100 * proc + t)
    for i in range({each}):
        a, b = rng.sample(models, 2)
        take = b"MThd"  # a round is votable once both sides have a take
        rnd = Round(Contestant(a, {{"temperature": 1.0}}, i, take), Contestant(b, {{"temperature": 1.0}}, i, take), "0" * 64,
                    "seed", 4.0, 5.0, round_id=f"p{{proc}}-t{{t}}-{{i}}")
        try:
            store.record(rnd, rng.choice(["a", "b", "tie", "both_bad"]), f"listener{{proc}}{{t}}")
            ok.append(rnd.round_id)
        except Exception as e:
            errors.append(repr(e))

threads = [threading.Thread(target=voter, args=(t,)) for t in range({threads})]
[t.start() for t in threads]
# meanwhile a listener votes through this process's A/B page: real rounds, the page's vote buttons
sys.path.insert(0, "tests")
from test_ab_page import new_round, texts
at = AppTest.from_file("pages/ab.py", default_timeout=120)
for i in range({page_votes}):
    new_round(at)
    go.set()
    at.button(key="ab_vote_a" if i % 2 else "ab_vote_b").click().run()
    assert texts(at.success) and "Vote stored" in texts(at.success)[0], (texts(at.error), at.exception)
[t.join() for t in threads]
print(len(ok), len(errors), errors[:3])
"""

BOARD = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
assert not at.exception, at.exception
print(json.dumps({"board": at.dataframe[0].value.to_dict("records"), "caption": [c.value for c in at.caption]}))
"""


def _procs(script: str, args_list: list[list[str]], env: dict) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in args_list]  # fmt: skip
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        outs.append(out)
    return outs


def test_two_app_processes_take_2000_votes_at_once_and_show_one_leaderboard(postgres):
    import os

    env = dict(os.environ, MUSICLAB_DB=postgres.url, PYTHONPATH=str(ROOT))
    writer = WRITER.format(each=VOTES_EACH, threads=THREADS, page_votes=PAGE_VOTES)
    outs = _procs(writer, [[postgres.url, "0"], [postgres.url, "1"]], env)
    for out in outs:
        n, n_err, _ = out.split(" ", 2)
        assert (int(n), int(n_err)) == (THREADS * VOTES_EACH, 0), out
    store = VoteStore(postgres.url)
    rows = store.votes()
    assert len(rows) == 2 * (THREADS * VOTES_EACH + PAGE_VOTES)  # 0 lost
    want = {f"p{p}-t{t}-{i}" for p in (0, 1) for t in range(THREADS) for i in range(VOTES_EACH)}
    assert want <= {r["round_id"] for r in rows} and len({r["round_id"] for r in rows} - want) == 2 * PAGE_VOTES
    assert len({r["id"] for r in rows}) == len(rows)
    # the A/B page of two separate app processes, on the same store: the same leaderboard
    boards = [json.loads(o) for o in _procs(BOARD, [[str(PAGE)], [str(PAGE)]], env)]
    assert boards[0] == boards[1]
    assert sum(r["games"] for r in boards[0]["board"]) == 2 * 2 * THREADS * VOTES_EACH  # lstm vs lstm is no game
    assert f"{len(rows)} vote(s) stored" in " ".join(boards[0]["caption"])


def test_a_killed_database_mid_round_keeps_the_round(postgres, monkeypatch):
    monkeypatch.setenv("MUSICLAB_DB", postgres.url)
    before = VoteStore(postgres.url).count()
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    new_round(at, mode="Two models")
    rnd = at.session_state["ab_round"]
    postgres.kill()
    try:
        at.button(key="ab_vote_b").click().run()
        err = " ".join(texts(at.error))
        assert "Vote not stored" in err and "could not reach the vote database" in err and "round is kept" in err
        assert "127.0.0.1" in err and not at.exception
        assert at.session_state["ab_round"] is rnd and len(at.get("audio")) == 2
        assert not at.session_state["ab_revealed"]
    finally:
        postgres.start()
    at.button(key="ab_vote_b").click().run()  # the server is back: the same round takes its vote
    assert texts(at.success) == ["Vote stored: B is better."]
    assert VoteStore(postgres.url).count() == before + 1


@pytest.mark.parametrize("url", ["postgresql://nobody@127.0.0.1:9/x", "postgresql://a:pw@256.0.0.1:5432/x"])
def test_an_unreachable_database_is_a_clear_error_without_its_password(url):
    from musiclab.listening.votes import StoreError

    with pytest.raises(StoreError, match="could not reach the vote database") as e:
        VoteStore(url).count()
    assert ":pw@" not in str(e.value)
