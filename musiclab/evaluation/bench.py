"""Benchmarks (figures, not pass/fail): ``python -m musiclab bench generate [--json]``.

For each usable model, from a 10 s seed (the bundled Joplin rag): seconds of new music
per wall-clock second for ``seconds`` (default 30) of music, ms per token, 4 variations
vs 1, time to first token, model load time, and the naive baseline measured in the same
run (re-running the whole last window for every token, as the papers do). Medians of
``repeats`` runs. Each generation gets the intra-op threads the app gives one user alone
(``sampling.engine_threads``: every core for recurrent and Transformer models, one for window
models, which run their two directions on two cores), or ``threads`` for all.

4 variations vs 1: ``repeats`` times (``r`` = 0, 1, ...), one take with random seed ``10 r`` and, right after it,
a batch of 4 with seeds ``10 r .. 10 r + 3`` (so take 0 of the batch is that very take, and
machine drift hits both alike). A batch lasts as long as its longest take, so the ratio is
split in two factors: ``longest_vs_single`` (tokens of the batch's longest take over the
single take's) and ``per_token_4_vs_1`` (wall time per step, batch of 4 over one take).
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from ..generation.sampling import Sampling, engine_threads, finish, generate, intra_op_threads, loop, prepare
from ..generation.take import Take
from ..midi.examples import list_examples
from ..midi.io import load_midi
from ..serving.weights import clear_cache, list_models, load_model, pick_device

SEED_TITLE = "Joplin — Maple Leaf Rag (piano)"


class Rerun:
    """The papers' way, for comparison: re-run the whole last window for every new token (what
    the carried state of :class:`~musiclab.generation.sampling.Carried` saves)."""

    state = None  # nothing carried (pianoroll-nade, which needs its state to draw a frame, raises)

    def __init__(self, net, x: torch.Tensor, rows: int):
        self.net, self.history = net, x.expand(rows, *x.shape[1:])  # (B, T) ids or (B, T, 88) frames
        self.logits = net.naive_step(self.history)

    def advance(self, new: torch.Tensor) -> None:
        grown = torch.cat([self.history, new.unsqueeze(1).to(self.history.dtype)], dim=1)
        self.history = grown[:, -self.net.get_block_size() :]
        self.logits = self.net.naive_step(self.history)


@torch.inference_mode()
def generate_naive(model, seed, *, seed_seconds: float, seconds: float, variations: int = 1,
                   random_seed: int = 0, threads: int | None = 1, **sampling) -> list[Take]:  # fmt: skip
    """:func:`~musiclab.generation.sampling.generate` with the window re-run instead of the
    carried state: the same takes (same maths; a bf16 step aside: models/fast.py), slower; raises ValueError for a model that has no
    window re-run (pianoroll-nade)."""
    run = prepare(model, seed, Sampling(**sampling), seed_seconds, seconds, variations, random_seed, None)
    with intra_op_threads(threads):
        loop(run, Rerun)
    return finish(run)


def _timed(model, seed, seconds, variations, naive=False, random_seed=0, threads=1):
    t0 = time.perf_counter()
    takes = (generate_naive if naive else generate)(
        model,
        seed,
        seed_seconds=10.0,
        seconds=seconds,
        variations=variations,
        random_seed=random_seed,
        top_p=0.95,
        threads=threads,
    )
    wall = time.perf_counter() - t0
    return wall, takes[0].info  # its "tokens": steps until every take of the batch was done


def bench_model(name: str, seconds: float = 30.0, repeats: int = 3, threads: int | None = None) -> dict:
    """One model's figures; ``threads`` per generation (None: what the app gives one user, engine_threads)."""
    seed = load_midi(list_examples()[SEED_TITLE])
    loads = []
    for _ in range(repeats):
        clear_cache()
        t0 = time.perf_counter()
        model = load_model(name)
        loads.append(time.perf_counter() - t0)
    threads = engine_threads(model) if threads is None else threads
    _timed(model, seed, 2.0, 1, threads=threads)  # warm-up
    one, four = [], []
    for r in range(repeats):  # interleaved, disjoint seeds: see the module docstring
        one.append(_timed(model, seed, seconds, 1, random_seed=10 * r, threads=threads))
        four.append(_timed(model, seed, seconds, 4, random_seed=10 * r, threads=threads))
    try:
        runs = range(max(1, repeats // 2))
        naive = [_timed(model, seed, seconds, 1, naive=True, random_seed=r, threads=threads) for r in runs]
    except ValueError:  # a model whose step is not a window re-run (e.g. NADE needs the frame it predicts)
        naive = None
    pairs = list(zip(one, four))
    med = lambda runs: statistics.median(w for w, _ in runs)
    toks = statistics.median(i["tokens"] for _, i in one)
    naive_toks = statistics.median(i["tokens"] for _, i in naive) if naive else 0
    ms_tok = 1000 * med(one) / max(toks, 1)
    naive_ms_tok = 1000 * med(naive) / max(naive_toks, 1) if naive else None
    return {
        "model": name,
        "threads": threads,
        "tokens": int(toks),
        "seconds_of_music": seconds,
        "wall_s_1": round(med(one), 3),
        "realtime_x_1": round(seconds / med(one), 1),
        "ms_per_token": round(ms_tok, 3),
        "first_token_ms": round(1000 * statistics.median(i["first_token_seconds"] for _, i in one), 1),
        "wall_s_4": round(med(four), 3),
        "ratio_4_vs_1": round(med(four) / med(one), 2),
        "longest_vs_single": round(statistics.median(f["tokens"] / o["tokens"] for (_, o), (_, f) in pairs), 2),
        "per_token_4_vs_1": round(
            statistics.median((wf / f["tokens"]) / (wo / o["tokens"]) for (wo, o), (wf, f) in pairs), 2
        ),
        "naive_ms_per_token": round(naive_ms_tok, 3) if naive else None,
        "speedup_vs_naive": round(naive_ms_tok / ms_tok, 1) if naive else None,
        "load_s": round(statistics.median(loads), 3),
    }


def bench_generate(
    as_json: bool = False,
    models: list[str] | None = None,
    seconds: float = 30.0,
    repeats: int = 3,
    threads: int | None = None,
):
    names = models or [m["name"] for m in list_models() if m["status"] == "ok"]
    rows = [bench_model(n, seconds, repeats, threads) for n in names]
    env = {"device": str(pick_device()), "threads": threads or "auto", "torch": torch.__version__}
    if as_json:
        print(json.dumps({"env": env, "results": rows}, indent=1))
        return rows
    print(
        f"device {env['device']}, threads per generation: {env['threads']}, torch {env['torch']}; {seconds:g} s of music "
        f"from a 10 s seed; medians of {repeats}"
    )
    hdr = ("model", "threads", "x realtime", "ms/token", "tokens", "4 var / 1", "longest take / single", "step 4 / 1")
    hdr += ("naive ms/tok", "speedup", "1st tok ms", "load s")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        print(
            f"| {r['model']} | {r['threads']} | {r['realtime_x_1']} | {r['ms_per_token']} | {r['tokens']} | {r['ratio_4_vs_1']} | "
            f"{r['longest_vs_single']} | {r['per_token_4_vs_1']} | "
            f"{r['naive_ms_per_token']} | {r['speedup_vs_naive']}x | {r['first_token_ms']} | {r['load_s']} |"
        )
    return rows
