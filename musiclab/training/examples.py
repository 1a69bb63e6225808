"""Training examples for the flagship, made on the fly: continue, infill, accompany, with augmentation.

One example is ``block_size + 1`` ids (inputs = all but the last, targets = all but the first;
PAD = 0 fills a short piece's end and is never a target). Every example is cut from a random
bar of a random piece, after augmentation:
* transposition by up to +-``transpose`` semitones, chosen so every pitch stays in 21-108;
* velocity jitter: every velocity moves by one random offset of up to +-``velocity_jitter``;
* a tempo stretch of up to +-``stretch`` for performances (their beats are a clock, not a
  score's, so stretching them is a real variation; scores keep their bar lines).
Tasks (musiclab/codecs/barnote.py has the streams):
* continue: the merged stream from a bar on;
* infill (``p_infill``): ``INFILL suffix FILL_k prefix MID middle EOM`` for a random span of
  k = 0 .. ``max_fill_bars`` bar lines starting and ending at random grid steps;
* accompany (``p_accompany`` of the pieces with a melody track): MEL / ACC bars. In ``p_cold``
  of them the accompaniment is withheld (``BAR MEL <melody>``, no ACC section) for the first
  1-8 bars and then for each bar with probability ``p_withhold``: the accompaniment that follows
  must start from the melody alone, as it does in a real take (trained on whole MEL / ACC
  streams only, the model predicts a bar's accompaniment from the bars before it and all but
  ignores the melody: docs/flagship.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codecs.barnote import HIGH, LOW, MELODY, BarNoteCodec, Notes

REGION_BARS = 96  # bars encoded around a window's start (enough for 1,024 tokens of most music)


@dataclass
class ExampleConfig:
    block_size: int = 1024  # tokens a model reads at once
    p_infill: float = 0.25  # share of examples that are infill
    p_accompany: float = 0.5  # share of melody+accompaniment pieces written as MEL / ACC bars
    p_cold: float = 0.0  # share of accompany examples with withheld accompaniment bars
    p_withhold: float = 0.1  # in those, each bar after the lead-in loses its ACC section with this chance
    max_fill_bars: int = 8  # longest infill span, in bar lines crossed
    suffix_tokens: int = 256  # at most this much of the suffix is shown
    transpose: int = 6  # semitones, either way
    velocity_jitter: int = 8
    stretch: float = 0.1  # performances only: onsets and durations times 1 +- stretch


def augment(notes: Notes, kind: str, rng: np.random.Generator, cfg: ExampleConfig) -> Notes:
    """Transposed (in range), velocity-jittered and (performances) stretched copy of ``notes``."""
    lo, hi = int(notes.pitch.min()), int(notes.pitch.max())
    shift = int(rng.integers(max(-cfg.transpose, LOW - lo), min(cfg.transpose, HIGH - hi) + 1)) if len(notes) else 0
    vel = np.clip(notes.velocity + int(rng.integers(-cfg.velocity_jitter, cfg.velocity_jitter + 1)), 1, 127)
    f = 1.0 + float(rng.uniform(-cfg.stretch, cfg.stretch)) if kind == "performance" else 1.0
    return Notes(notes.onset * f, notes.duration * f, notes.pitch + shift, vel, notes.track)


def _fit(ids: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` ids, right-padded with PAD."""
    out = np.zeros(n, dtype=np.int64)
    out[: min(n, len(ids))] = ids[:n]
    return out


def _tail_from_bar(ids: np.ndarray, n: int, bar_id: int) -> np.ndarray:
    """The last ``n`` ids at most, starting at a BAR (so the prefix reads from a bar line)."""
    if len(ids) <= n:
        return ids
    tail = ids[-n:]
    bars = np.flatnonzero(tail == bar_id)
    return tail[bars[0] :] if len(bars) else tail


def make_example(codec: BarNoteCodec, notes: Notes, kind: str, rng: np.random.Generator,
                 cfg: ExampleConfig, augmented: bool = True) -> tuple[np.ndarray, str]:  # fmt: skip
    """One training example (block_size + 1 ids) from one piece, and its task name."""
    if augmented:
        notes = augment(notes, kind, rng, cfg)
    q = codec.quantize(notes)
    lo, hi = codec.bars_of(q)
    n = cfg.block_size + 1
    two_track = bool(np.any(q[:, 3] == MELODY))
    if two_track and rng.random() < cfg.p_accompany:
        b = int(rng.integers(lo, hi))
        ids = codec.encode(q, b, min(b + REGION_BARS, hi), two_track=True)
        if cfg.p_cold and rng.random() < cfg.p_cold:  # no draw at 0: older runs' streams stay as they were
            ids = withhold_accompaniment(ids, codec, rng, cfg.p_withhold)
        return _fit(ids, n), "accompany"
    if rng.random() < cfg.p_infill and hi - lo > 2:
        ex = _infill(codec, q, lo, hi, rng, cfg)
        if ex is not None:
            return ex, "infill"
    b = int(rng.integers(lo, hi))
    return _fit(codec.encode(q, b, min(b + REGION_BARS, hi)), n), "continue"


def withhold_accompaniment(ids: np.ndarray, codec: BarNoteCodec, rng: np.random.Generator, p: float) -> np.ndarray:
    """Two-track ``ids`` without the ACC section of their first 1-8 bars and of each later bar
    with probability ``p``: those bars read ``BAR MEL <melody>``."""
    bars = np.split(ids, np.flatnonzero(ids == codec.bar)[1:])
    cold = int(rng.integers(1, 9))
    drop = (np.arange(len(bars)) < cold) | (rng.random(len(bars)) < p)
    acc = codec.ids["ACC"]
    return np.concatenate([bar[: np.flatnonzero(bar == acc)[0]] if d else bar for bar, d in zip(bars, drop)])


def _infill(codec: BarNoteCodec, q: np.ndarray, lo: int, hi: int, rng, cfg: ExampleConfig):
    S, n = codec.steps_per_bar, cfg.block_size + 1
    k = int(rng.integers(0, min(cfg.max_fill_bars, hi - lo - 1) + 1))
    b0 = int(rng.integers(lo, hi - k))
    p0 = 0 if rng.random() < 0.5 else int(rng.integers(0, S))
    p1 = 0 if rng.random() < 0.5 else int(rng.integers(0, S))
    s0, s1 = b0 * S + p0, (b0 + k) * S + p1
    if s1 <= s0:
        s1 = s0 + S // 4
        k, p1 = s1 // S - b0, s1 % S
    suffix = codec.encode(q, b0 + k, min(b0 + k + REGION_BARS, hi + 1), step_lo=s1)[: cfg.suffix_tokens]
    middle = codec.encode(q, b0, b0 + k + 1, step_lo=s0, step_hi=s1)[1:]  # its first BAR is the prefix's
    room = n - len(suffix) - len(middle) - 4
    if room < 64:
        return None
    prefix = _tail_from_bar(codec.encode(q, max(lo, b0 - REGION_BARS), b0 + 1, step_hi=s0), room, codec.bar)
    ids = codec.ids
    seq = [[ids["INFILL"]], suffix, [codec.fill_id(k)], prefix, [ids["MID"]], middle, [ids["EOM"]]]
    return _fit(np.concatenate(seq).astype(np.int64), n)


class ExampleSampler:
    """Batches of examples from a corpus's files, each file drawn with probability proportional
    to its tokens over the square root of its piece's file count (many performances of one piece
    do not crowd out the rest)."""

    def __init__(self, codec: BarNoteCodec, notes: list[Notes], files: list[dict], cfg: ExampleConfig):
        self.codec, self.notes, self.files, self.cfg = codec, notes, files, cfg
        per_piece: dict[str, int] = {}
        for f in files:
            per_piece[f["piece"]] = per_piece.get(f["piece"], 0) + 1
        w = np.array([f["tokens"] / np.sqrt(per_piece[f["piece"]]) for f in files], dtype=np.float64)
        self.p = w / w.sum()

    def batch(self, size: int, rng: np.random.Generator, augmented: bool = True) -> tuple[np.ndarray, list[str]]:
        """(size, block_size + 1) int64 ids and the task of each row."""
        rows, tasks = [], []
        for f in rng.choice(len(self.files), size=size, p=self.p):
            ids, task = make_example(self.codec, self.notes[f], self.files[f]["kind"], rng, self.cfg, augmented)
            rows.append(ids)
            tasks.append(task)
        return np.stack(rows), tasks
