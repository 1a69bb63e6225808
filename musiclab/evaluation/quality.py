"""Quality benchmark: do continuations of unseen pieces stay in the piece's key, density and texture?

``python -m musiclab bench quality [--models ...] [--json]``: for validation pieces of each
source (the flagship corpus's split: no model here trained on them), seed = the piece's first
10 s (and, where the piece is long enough, its first 60 s), ``seconds`` (30) of continuation,
``takes`` (2) takes per seed with the app's default sampling for that model (``app_defaults``:
top-p 0.95, repetition penalty 1.1, under what its card's "sampling" sets). Each take is measured against the piece's **real** continuation (the same span):

* ``pc_tv``: total variation between pitch-class histograms (0-1);
* ``ioi_tv``: total variation between inter-onset-interval histograms, beats (0-1);
* ``density``: |log2(notes per second / the real's)| (0 = as busy; 1 = twice or half);
* ``polyphony``: |log2(mean notes sounding / the real's)|;
* ``in_key``: share of notes in the seed's estimated key (the real continuation's own share is
  the ``real`` row; ``in_key_gap`` = |take's - real's|).
Baselines measured the same way: ``real`` (the continuation itself), ``seed loop`` (the seed's
last 10 s repeated), ``another piece`` (another validation piece's real continuation, same span).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pretty_midi

from ..midi.io import load_midi
from .metrics import distances, seed_key, segment_stats

METRICS = ("pc_tv", "ioi_tv", "density", "polyphony", "in_key", "in_key_gap")
FLOOR = {"density": 0.05, "polyphony": 0.5}  # an empty take still gets a finite ratio


@dataclass
class Seed:
    source: str
    path: str  # manifest path (source/relative)
    pm: pretty_midi.PrettyMIDI
    seed_end: float  # seconds


def log_ratio(a: float, b: float, floor: float) -> float:
    return abs(math.log2(max(a, floor) / max(b, floor)))


def measure(pm: pretty_midi.PrettyMIDI, real: pretty_midi.PrettyMIDI, seed_end: float, seconds: float,
            key: tuple[int, str]) -> dict:  # fmt: skip
    """A continuation (onsets in [seed_end, seed_end + seconds) of ``pm``) against the real one."""
    a = segment_stats(pm, seed_end, seed_end + seconds, key)
    b = segment_stats(real, seed_end, seed_end + seconds, key)
    d = distances(a, b)
    return {
        "pc_tv": d["pc_tv"] if d["pc_tv"] is not None else 1.0,
        "ioi_tv": d["ioi_tv"] if d["ioi_tv"] is not None else 1.0,
        "density": log_ratio(a["density"], b["density"], FLOOR["density"]),
        "polyphony": log_ratio(a["polyphony"], b["polyphony"], FLOOR["polyphony"]),
        "in_key": a["in_key"] if a["in_key"] is not None else 0.0,
        "in_key_gap": abs((a["in_key"] or 0.0) - (b["in_key"] or 0.0)),
    }


def seed_loop(
    pm: pretty_midi.PrettyMIDI, seed_end: float, seconds: float, loop: float = 10.0
) -> pretty_midi.PrettyMIDI:
    """The seed up to ``seed_end`` followed by its last ``loop`` seconds repeated until ``seed_end + seconds``."""
    out = copy.deepcopy(pm)
    loop = min(loop, seed_end)
    for inst in out.instruments:
        base = [n for n in inst.notes if seed_end - loop <= n.start < seed_end]
        inst.notes = [n for n in inst.notes if n.start < seed_end]
        k = 1
        while seed_end + (k - 1) * loop < seed_end + seconds:
            for n in base:
                s = n.start + k * loop
                if s < seed_end + seconds:
                    inst.notes.append(pretty_midi.Note(n.velocity, n.pitch, s, min(n.end, seed_end) + k * loop))
            k += 1
    return out


def validation_files(corpus, source: str, pieces: int, min_seconds: float = 0.0) -> list[dict]:
    """``pieces`` validation files of ``source`` lasting ``min_seconds`` or more, one per piece,
    spread over the split (manifest rows of the flagship corpus)."""
    by_piece: dict[str, dict] = {}
    for f in corpus.files:
        if f["source"] == source and f["split"] == "valid" and f["seconds"] >= min_seconds:
            by_piece.setdefault(f["piece"], f)
    chosen = sorted(by_piece.values(), key=lambda f: f["path"])
    return chosen[:: max(1, len(chosen) // max(pieces, 1))][:pieces]


MIN_SEED_NOTES = 8  # a seed with fewer gives a model (and the seed loop) almost nothing to go on


def pick_seeds(corpus, roots: dict[str, str], pieces: int, seconds: float) -> list[Seed]:
    """``pieces`` validation pieces per source (one file per piece, spread over the split), with a
    10 s seed and, when the piece lasts 60 s + ``seconds`` or more, a 60 s seed too. A seed with
    fewer than MIN_SEED_NOTES notes (a song's silent or sparse intro) is left out."""
    out = []
    for source, root in sorted(roots.items()):
        for f in validation_files(corpus, source, pieces, 10 + seconds):
            pm = load_midi(f"{root}/{f['path'].split('/', 1)[1]}")
            for end in (10.0, 60.0):
                onsets = [n.start for i in pm.instruments if not i.is_drum for n in i.notes]
                enough = sum(t < end for t in onsets) >= MIN_SEED_NOTES
                if pm.get_end_time() >= end + seconds and enough:
                    out.append(Seed(source, f["path"], pm, end))
    return out


def run(models: list, seeds: list[Seed], seconds: float = 30.0, takes: int = 2, random_seed: int = 0,
        log=print) -> list[dict]:  # fmt: skip
    """Rows {source, path, seed_end, system, take, metrics...} for every model and baseline."""
    from ..generation.sampling import app_defaults, generate

    rows = []
    for i, sd in enumerate(seeds):
        key = seed_key(sd.pm, sd.seed_end)
        same = [s for s in seeds if s.source == sd.source and s.path != sd.path and s.seed_end == sd.seed_end]
        other = same[i % len(same)] if same else None
        base = {"source": sd.source, "path": sd.path, "seed_end": sd.seed_end}
        rows.append({**base, "system": "real", "take": 0, **measure(sd.pm, sd.pm, sd.seed_end, seconds, key)})
        loop = seed_loop(sd.pm, sd.seed_end, seconds)
        rows.append({**base, "system": "seed loop", "take": 0, **measure(loop, sd.pm, sd.seed_end, seconds, key)})
        if other is not None:
            rows.append({**base, "system": "another piece", "take": 0,
                         **measure(other.pm, sd.pm, sd.seed_end, seconds, key)})  # fmt: skip
        for model in models:
            out = generate(model, sd.pm, seed_seconds=sd.seed_end, seconds=seconds, variations=takes,
                           random_seed=random_seed + 1000 * i, **app_defaults(model.card))  # fmt: skip
            for t, pm in enumerate(take.midi for take in out):
                rows.append({**base, "system": model.name, "take": t, **measure(pm, sd.pm, sd.seed_end, seconds, key)})
        log(f"  {sd.path} @ {sd.seed_end:g} s: {len(models)} models")
    return rows


def table(rows: list[dict], keys: tuple[str, ...] = METRICS) -> list[dict]:
    """Means of ``keys`` per (source, system) and per system over all sources ("all"); a key
    with no value in a group (None) is None."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["system"]), []).append(r)
        groups.setdefault(("all", r["system"]), []).append(r)
    out = []
    for (source, system), rs in sorted(groups.items()):
        row = {"source": source, "system": system, "takes": len(rs)}
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            row[k] = round(float(np.mean(vals)), 3) if vals else None
        out.append(row)
    return out


HEADS = {"pc_tv": "pc TV", "ioi_tv": "IOI TV", "density": "abs log2 density", "polyphony": "abs log2 polyphony",
         "in_key": "in-key", "in_key_gap": "in-key gap"}  # fmt: skip


def markdown(summary: list[dict], keys: tuple[str, ...] = METRICS, heads: dict | None = None) -> str:
    heads = {**HEADS, **(heads or {})}
    lines = ["| source | system | takes | " + " | ".join(heads.get(k, k) for k in keys) + " |",
             "|---|---|---:|" + "---:|" * len(keys)]  # fmt: skip
    for r in summary:
        vals = " | ".join("–" if r[k] is None else f"{r[k]:.3f}" for k in keys)
        lines.append(f"| {r['source']} | {r['system']} | {r['takes']} | {vals} |")
    return "\n".join(lines)
