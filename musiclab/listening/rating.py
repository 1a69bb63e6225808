"""Ratings from A/B votes: Bradley-Terry strengths (logistic fit), bootstrap intervals, head-to-head.

Bradley-Terry: P(i beats j) = p_i / (p_i + p_j) = sigmoid(theta_i - theta_j) with
theta = log p, fitted by maximum likelihood (a logistic fit, solved by Newton's method);
a tie or a "both bad" vote counts half a win for each side. An optional ``prior`` adds that many virtual games (half
won, half lost) against a fixed average player of strength 1, so a player who never won
still gets a finite rating. Ratings are shown on the Elo scale:
``1000 + 400 * log10(p_i)`` with the players' mean log-strength at 0, so a 400-point gap
means 10:1 odds. The 95% intervals come from resampling the votes with replacement.
A vote between two identical players carries no information and is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

POINTS = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}  # points for side a (b gets 1 - that)
ELO_PER_LOG = 400 / math.log(10)  # Elo points per unit of natural log-strength
ELO_BASE = 1000.0

Match = tuple[str, str, str]  # (player shown as A, player shown as B, vote in POINTS)


def _arrays(matches: Iterable[Match]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(players sorted, index of a (N,), index of b (N,), points of a (N,)); self-matches dropped."""
    rows = []
    for a, b, vote in matches:
        if vote not in POINTS:
            raise ValueError(f"vote {vote!r} is not accepted; expected one of {', '.join(POINTS)}")
        if a != b:
            rows.append((a, b, POINTS[vote]))
    players = sorted({p for a, b, _ in rows for p in (a, b)})
    pos = {p: i for i, p in enumerate(players)}
    ia = np.array([pos[a] for a, _, _ in rows], dtype=np.int64)
    ib = np.array([pos[b] for _, b, _ in rows], dtype=np.int64)
    sa = np.array([s for _, _, s in rows], dtype=np.float64)
    return players, ia, ib, sa


def win_matrix(k: int, ia: np.ndarray, ib: np.ndarray, sa: np.ndarray) -> np.ndarray:
    """(k, k) points: ``w[i, j]`` = points i scored against j (ties count 0.5)."""
    w = np.zeros((k, k))
    np.add.at(w, (ia, ib), sa)
    np.add.at(w, (ib, ia), 1.0 - sa)
    return w


def _loglik(theta: np.ndarray, wins: np.ndarray, prior: float) -> float:
    """Bradley-Terry log-likelihood of log-strengths ``theta`` (+ the prior's virtual games)."""
    diff = theta[:, None] - theta[None, :]
    ll = -(wins * np.logaddexp(0.0, -diff)).sum()  # sum_ij w_ij log sigmoid(theta_i - theta_j)
    return float(ll - prior / 2 * (np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum())


def bradley_terry(wins: np.ndarray, prior: float = 0.0, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Log-strengths (k,), centred to mean 0, from a (k, k) win matrix (logistic fit, Newton).

    ``wins[i, j]`` = points i scored against j (ties 0.5 each). ``prior`` = virtual games per
    player against a fixed strength-1 player, half won. With ``prior = 0`` the maximum
    likelihood fit exists only if every player has some wins and some losses; otherwise a
    ValueError says so (use ``prior > 0``). Newton steps are halved until the likelihood
    rises, so the fit converges from any data (the likelihood is concave).
    """
    wins = np.asarray(wins, dtype=np.float64)
    if wins.ndim != 2 or wins.shape[0] != wins.shape[1]:
        raise ValueError(f"expected a square (k, k) win matrix; got shape {wins.shape}")
    k = wins.shape[0]
    if prior <= 0 and k and (np.any(wins.sum(1) <= 0) or np.any(wins.sum(0) <= 0)):
        raise ValueError("expected every player to have won and lost some points with prior = 0; got a player without")
    games = wins + wins.T
    theta = np.zeros(k)
    ll = _loglik(theta, wins, prior)
    for _ in range(max_iter):
        sig = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))  # P(i beats j), (k, k)
        s0 = 1 / (1 + np.exp(-theta))  # P(i beats the prior's strength-1 player), (k,)
        grad = wins.sum(1) - (games * sig).sum(1) + prior / 2 - prior * s0
        curv = games * sig * sig.T  # n_ij * s_ij * (1 - s_ij)
        hess = curv - np.diag(curv.sum(1) + prior * s0 * (1 - s0))
        step = np.linalg.lstsq(hess, -grad, rcond=None)[0]  # min-norm: keeps the mean when prior = 0
        t = 1.0
        while t > 1e-8:
            new_ll = _loglik(theta + t * step, wins, prior)
            if new_ll >= ll - 1e-12:
                break
            t /= 2
        theta, ll = theta + t * step, new_ll
        if np.max(np.abs(t * step)) < tol:
            break
    return theta - theta.mean()


def to_elo(logp: np.ndarray) -> np.ndarray:
    """Log-strengths -> Elo-scale ratings (1000 = average; +400 = 10:1 odds)."""
    return ELO_BASE + ELO_PER_LOG * np.asarray(logp)


def leaderboard(
    matches: Iterable[Match], prior: float = 1.0, n_boot: int = 500, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """One row per player, best first: rating, low/high (``level`` bootstrap interval,
    ``n_boot`` resamples of the votes, fixed ``seed``; with ``prior = 0`` resamples without
    a fit are skipped), games, wins, ties, losses, both_bad
    and score (share of points, 0-1). "both bad" votes count as ties in the rating and in
    ``ties``; ``both_bad`` counts them apart as well."""
    matches = list(matches)
    players, ia, ib, sa = _arrays(matches)
    cols = ["player", "rating", "low", "high", "games", "wins", "ties", "losses", "both_bad", "score"]
    if not players:
        return pd.DataFrame(columns=cols)
    k = len(players)
    rating = to_elo(bradley_terry(win_matrix(k, ia, ib, sa), prior))
    # resampling N votes with replacement = multinomial counts over the distinct (a, b, points) cells
    cells, count = np.unique(np.stack([ia, ib, sa]), axis=1, return_counts=True)
    ca, cb, cs = cells[0].astype(np.int64), cells[1].astype(np.int64), cells[2]
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, k))
    for r in range(n_boot):
        c = rng.multinomial(len(sa), count / count.sum())
        w = np.zeros((k, k))
        np.add.at(w, (ca, cb), c * cs)
        np.add.at(w, (cb, ca), c * (1.0 - cs))
        try:
            boots[r] = to_elo(bradley_terry(w, prior, tol=1e-8))
        except ValueError:  # prior = 0 and a resample where someone never won: no fit, skip it
            boots[r] = np.nan
    lo, hi = np.nanpercentile(boots, [50 * (1 - level), 50 * (1 + level)], axis=0) if n_boot else (rating, rating)
    bad = np.array([v == "both_bad" for a, b, v in matches if a != b])
    stats = []
    for i in range(k):
        as_a, as_b = ia == i, ib == i
        pts = np.concatenate([sa[as_a], 1 - sa[as_b]])
        stats.append(
            dict(
                games=int(pts.size),
                wins=int((pts == 1).sum()),
                ties=int((pts == 0.5).sum()),
                losses=int((pts == 0).sum()),
                both_bad=int(bad[as_a | as_b].sum()),
                score=float(pts.mean()) if pts.size else float("nan"),
            )
        )
    df = pd.DataFrame({"player": players, "rating": rating, "low": lo, "high": hi})
    df = pd.concat([df, pd.DataFrame(stats)], axis=1)[cols]
    return df.sort_values("rating", ascending=False, ignore_index=True)


def head_to_head(matches: Iterable[Match]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(score, games): ``score.loc[i, j]`` = share of points row i took from column j
    (ties half; NaN if they never met), ``games.loc[i, j]`` = votes between them."""
    players, ia, ib, sa = _arrays(matches)
    k = len(players)
    w = win_matrix(k, ia, ib, sa)
    n = w + w.T
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, w / n, np.nan)
    frame = lambda a: pd.DataFrame(a, index=players, columns=players)
    return frame(share), frame(n.astype(int))
