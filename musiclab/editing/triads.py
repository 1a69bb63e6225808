"""The 24 major and minor triads, half bars and a melody's beats per pitch class: what the chord
rules (harmony.py) and the chord model (chordnet.py) both read."""

from __future__ import annotations

import numpy as np

TRIADS = [(r, q) for r in range(12) for q in ("", "m")]  # (root, "" major / "m" minor)
TONES = np.array(
    [[pc in {r, (r + (3 if q else 4)) % 12, (r + 7) % 12} for pc in range(12)] for r, q in TRIADS], dtype=float
)  # (24, 12): each triad's pitch classes


def half_edges(bars: list[tuple[int, int]]) -> np.ndarray:
    """(2 x bars + 1,) grid steps where each half of each bar ([lo, hi) steps) starts, then the last end."""
    return np.array([x for a, z in bars for x in (a, (a + z) // 2)] + [bars[-1][1]])


def melody_beats(notes, edges: np.ndarray) -> np.ndarray:
    """(len(edges) - 1, 12): beats of melody on each pitch class between successive ``edges`` (beats)."""
    out = np.zeros((len(edges) - 1, 12))
    for onset, dur, pitch in zip(notes.onset.tolist(), notes.duration.tolist(), notes.pitch.tolist()):
        overlap = np.minimum(edges[1:], onset + dur) - np.maximum(edges[:-1], onset)
        out[:, pitch % 12] += np.maximum(overlap, 0)
    return out
