"""Rating maths on hand-made vote tables with known Bradley-Terry strengths and orderings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musiclab.listening.rating import ELO_PER_LOG, bradley_terry, head_to_head, leaderboard, to_elo

# True strengths p = (4, 2, 1). Each pair's wins are exactly n_ij * p_i / (p_i + p_j), so
# the maximum-likelihood fit must return these strengths exactly.
EXACT = (
    [("A", "B", "a")] * 4 + [("A", "B", "b")] * 2  # 2:1
    + [("C", "A", "b")] * 4 + [("C", "A", "a")]  # A vs C 4:1 (A shown second)
    + [("B", "C", "a")] * 2 + [("B", "C", "b")]  # 2:1
)  # fmt: skip


def ratings(board) -> dict[str, float]:
    return dict(zip(board["player"], board["rating"]))


def test_exact_table_gives_known_strengths():
    r = ratings(leaderboard(EXACT, prior=0, n_boot=0))
    assert r["A"] - r["B"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    assert r["B"] - r["C"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    assert np.mean(list(r.values())) == pytest.approx(1000.0)


def test_win_matrix_fit_and_elo_scale():
    wins = np.array([[0, 4, 4], [2, 0, 2], [1, 1, 0]], dtype=float)
    logp = bradley_terry(wins)
    assert np.exp(logp - logp[2]) == pytest.approx([4, 2, 1], rel=1e-8)
    assert to_elo([math.log(10), 0.0])[0] - to_elo([math.log(10), 0.0])[1] == pytest.approx(400)
    assert ELO_PER_LOG * math.log(10) == pytest.approx(400)


def test_ties_and_both_bad_count_as_half_wins():
    plain = [("A", "B", "a")] * 3 + [("A", "B", "b")]  # A takes 3 of 4 points
    tied = [("A", "B", "a")] * 2 + [("A", "B", "tie")] * 2  # 2 + 2 * 0.5 = 3 of 4 points
    bad = [("A", "B", "a")] * 2 + [("B", "A", "both_bad")] * 2
    expected = ratings(leaderboard(plain, prior=0, n_boot=0))
    assert expected["A"] - expected["B"] == pytest.approx(400 * math.log10(3), abs=1e-6)
    for table in (tied, bad):
        assert ratings(leaderboard(table, prior=0, n_boot=0)) == pytest.approx(expected, abs=1e-6)


def test_fit_solves_the_likelihood_equations_on_a_random_table():
    """At the maximum, each player's points equal its expected points: W_i = sum_j n_ij s_ij."""
    rng = np.random.default_rng(3)
    wins = rng.integers(1, 20, (5, 5)).astype(float)
    np.fill_diagonal(wins, 0)
    theta = bradley_terry(wins)
    s = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    assert ((wins + wins.T) * s).sum(1) == pytest.approx(wins.sum(1), rel=1e-8)
    assert theta.mean() == pytest.approx(0, abs=1e-12)


def test_known_ordering_and_counts():
    votes = (
        [("lstm", "bigru", "a")] * 6 + [("bigru", "lstm", "a")] * 2 + [("lstm", "bigru", "tie")] * 2
        + [("bigru", "transformer", "a")] * 7 + [("transformer", "bigru", "both_bad")] * 3
        + [("lstm", "transformer", "a")] * 5 + [("lstm", "transformer", "b")]
        + [("lstm", "lstm", "a")] * 9  # a model against itself: no information, left out
    )  # fmt: skip
    board = leaderboard(votes, n_boot=200)
    assert list(board["player"]) == ["lstm", "bigru", "transformer"]
    row = board.set_index("player").loc["lstm"]
    assert (row.games, row.wins, row.ties, row.losses, row.both_bad) == (16, 11, 2, 3, 0)
    assert row.score == pytest.approx(12 / 16)
    t = board.set_index("player").loc["transformer"]
    assert (t.games, t.wins, t.ties, t.losses, t.both_bad) == (16, 1, 3, 12, 3)
    assert (board["low"] <= board["rating"]).all() and (board["rating"] <= board["high"]).all()


def test_prior_keeps_a_winless_player_finite_and_last():
    votes = [("A", "B", "a")] * 3 + [("A", "B", "b")] * 2 + [("B", "C", "a")] * 4 + [("C", "A", "b")] * 2
    with pytest.raises(ValueError, match="expected every player to have won and lost"):
        leaderboard(votes, prior=0)  # C never won: no maximum-likelihood fit
    board = leaderboard(votes, prior=1.0, n_boot=100)
    assert list(board["player"])[-1] == "C"
    assert np.isfinite(board[["rating", "low", "high"]].to_numpy(float)).all()
    # with prior the fit is pulled toward the average: gaps shrink as the prior grows
    spread = [np.ptp(leaderboard(EXACT, prior=p, n_boot=0)["rating"]) for p in (0, 1, 10)]
    assert spread[0] > spread[1] > spread[2] > 0


def test_bootstrap_interval_covers_truth_and_narrows_with_more_votes():
    true = {"m0": 0.0, "m1": 0.5, "m2": 1.0, "m3": 1.5}  # log-strengths
    rng = np.random.default_rng(0)

    def simulate(n):
        out = []
        for _ in range(n):
            a, b = rng.choice(list(true), 2, replace=False)
            pa = 1 / (1 + math.exp(true[b] - true[a]))
            out.append((a, b, "a" if rng.random() < pa else "b"))
        return out

    small, big = leaderboard(simulate(300), prior=0, seed=1), leaderboard(simulate(3000), prior=0, seed=1)
    assert list(big["player"]) == ["m3", "m2", "m1", "m0"]
    truth = to_elo(np.array(list(true.values())) - np.mean(list(true.values())))
    b = big.set_index("player").loc[list(true)]
    assert ((b["low"] <= truth) & (truth <= b["high"])).all()
    width = lambda df: (df["high"] - df["low"]).mean()
    assert width(big) < 0.5 * width(small)
    votes = simulate(100)
    assert leaderboard(votes, seed=5).equals(leaderboard(votes, seed=5))  # reproducible intervals
    assert not leaderboard(votes, seed=5).equals(leaderboard(votes, seed=6))  # ...that do come from resampling


def test_head_to_head_matrix():
    share, games = head_to_head(EXACT)
    assert share.loc["A", "B"] == pytest.approx(4 / 6) and share.loc["B", "A"] == pytest.approx(2 / 6)
    assert share.loc["A", "C"] == pytest.approx(4 / 5)
    assert games.loc["A", "C"] == 5 == games.loc["C", "A"]
    assert np.isnan(share.loc["A", "A"])


def test_unknown_vote_is_refused():
    with pytest.raises(ValueError, match="expected one of a, b, tie, both_bad"):
        leaderboard([("A", "B", "left")])
