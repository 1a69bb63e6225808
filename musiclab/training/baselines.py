"""Honest reference points: an n-gram (Markov) model of the same tokenization.

``ngram_nll`` fits an interpolated n-gram (orders 1..n, plus uniform) on the train
arrays and scores every next-token prediction of the valid arrays, in nats per token.
The interpolation weights are chosen from a small grid on the valid data itself, which
favours the baseline (so "beats the baseline" is a conservative claim).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np


def _counts(arrays, n):
    tables = [defaultdict(Counter) for _ in range(n)]
    for a in arrays:
        a = a.tolist()
        for i in range(len(a)):
            for k in range(n):  # context length k
                if i - k < 0:
                    break
                tables[k][tuple(a[i - k : i])][a[i]] += 1
    totals = [{ctx: sum(c.values()) for ctx, c in t.items()} for t in tables]
    return tables, totals


def ngram_nll(train: list[np.ndarray], valid: list[np.ndarray], vocab_size: int, n: int = 3) -> dict:
    """Interpolated n-gram NLL (nats/token) and top-1 accuracy on ``valid`` (1-D id arrays)."""
    tables, totals = _counts(train, n)
    events = []  # per valid target: list of P_k for k = 0..n-1 (0 = unigram)
    best_hits = 0
    for a in valid:
        a = a.tolist()
        for i in range(1, len(a)):
            ps = []
            guess = None
            for k in range(n):
                ctx = tuple(a[i - k : i]) if i - k >= 0 else None
                c = tables[k].get(ctx) if ctx is not None else None
                if c:
                    ps.append(c.get(a[i], 0) / totals[k][ctx])
                    guess = c.most_common(1)[0][0]
                else:
                    ps.append(None)
            best_hits += guess == a[i]
            events.append(ps)
    grid = [w for w in itertools.product([0.05, 0.1, 0.2, 0.3, 0.5], repeat=n) if sum(w) < 1]
    best = math.inf
    P = np.array([[p if p is not None else np.nan for p in ps] for ps in events])
    for w in grid:
        w = np.array(w)
        avail = ~np.isnan(P)
        wm = np.where(avail, w, 0.0)
        mix = np.nansum(P * wm, axis=1) + (1 - wm.sum(1)) / vocab_size
        best = min(best, float(-np.log(mix).mean()))
    return {"nll": best, "accuracy": best_hits / max(len(events), 1), "targets": len(events), "order": n}


def bernoulli_nll(train: list[np.ndarray], valid: list[np.ndarray]) -> dict:
    """Per-key independent Bernoulli (a 1-gram for multi-hot frames): nats per frame, summed over keys."""
    x = np.concatenate(train).astype(float)
    p = np.clip(x.mean(0), 1e-6, 1 - 1e-6)
    v = np.concatenate(valid).astype(float)
    ll = v * np.log(p) + (1 - v) * np.log(1 - p)
    return {"nll": float(-ll.sum(1).mean()), "targets": len(v), "order": 1}
