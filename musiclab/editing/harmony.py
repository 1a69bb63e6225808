"""The chords an accompaniment follows: given as chord symbols per bar, or estimated from the melody.

A :class:`Harmony` holds the pitch classes of the chord sounding at each grid step of a span;
the accompaniment's sampler pulls its notes towards them (``BarNoteState.keep_harmony``).
Chord symbols are read by music21 (``C``, ``Am``, ``F#m7``, ``Bb/D``, ``G7sus4``...). The
estimate scores the 24 major and minor triads on each half bar of the melody (time spent on
chord tones minus time off them, with a small bonus for chords of the melody's key) and keeps
the chord through half bars without melody.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..generation.sampling import SettingsError

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
TRIADS = [(r, q) for r in range(12) for q in ("", "m")]  # (root, "" major / "m" minor)
_TONES = np.zeros((24, 12))
for _i, (_r, _q) in enumerate(TRIADS):
    _TONES[_i, [_r, (_r + (3 if _q else 4)) % 12, (_r + 7) % 12]] = 1
GIVEN_PULL = 3.0  # nats of logit a note of a given chord gains (tuned on POP909 songs the benchmark does not use)
ESTIMATED_PULL = 2.0  # less for an estimated chord, which may be wrong
OFF_WEIGHT = 1.0  # a beat of melody off the chord costs as much as a beat on it gains
KEY_BONUS = 0.5  # beats' worth of evidence for a chord of the melody's key
BAR_CONTEXT = 0.5  # weight of the other half of the bar in a half bar's evidence (two notes rarely name a chord)
HOLD_BONUS = 0.25  # beats' worth of evidence for keeping the chord of the half bar before


@dataclass
class Harmony:
    """Chords on the grid: ``tones[k]`` (12,) bool are the pitch classes sounding at step
    ``first_step + k`` (none: no chord there); ``names`` one label per bar, for people."""

    first_step: int
    tones: np.ndarray  # (steps, 12) bool
    names: list[str]
    pull: float = GIVEN_PULL  # nats of logit a chord tone gains (BarNoteState.keep_harmony)

    def at(self, steps: np.ndarray) -> np.ndarray:
        """(B, 12) bool: the chord at each of ``steps`` (B,) (none outside the span)."""
        k = np.asarray(steps) - self.first_step
        inside = (k >= 0) & (k < len(self.tones))
        out = np.zeros((len(k), 12), dtype=bool)
        out[inside] = self.tones[k[inside]]
        return out


def chord_tones(symbol: str) -> frozenset[int]:
    """Pitch classes of a chord symbol (``Bb`` and ``B-`` both mean B flat), or a SettingsError."""
    from music21 import harmony

    text = re.sub(r"(^|/)([A-Ga-g])b", lambda m: m[1] + m[2].upper() + "-", symbol.strip())
    try:
        c = harmony.ChordSymbol(text[0].upper() + text[1:])
        return frozenset(p.pitchClass for p in c.pitches)
    except Exception:  # music21 raises ValueError, KeyError or its own errors on a bad symbol
        raise SettingsError(f"{symbol!r} is not a chord symbol; expected e.g. C, Am, F#m7, Bb/D, G7sus4, "
                            "N for no chord, % to repeat the bar before") from None  # fmt: skip


def parse_chords(text: str, first_bar: int, bars: int, steps_per_bar: int) -> Harmony:
    """Chord symbols, one bar each from ``first_bar`` ("C Am F G", or "C | Am | F G | G7" where
    chords sharing a bar split it evenly): a Harmony over ``bars`` bars. Fewer bars of chords
    than ``bars`` repeat from the first, as a loop; bars past ``bars`` are not used."""
    groups = [g.split() for g in text.split("|")] if "|" in text else [[w] for w in text.split()]
    groups = [g for g in groups if g]
    if not groups:
        raise SettingsError("no chords were given; expected chord symbols, one bar each, e.g. C Am F G")
    S, tones, names, before = steps_per_bar, np.zeros((bars * steps_per_bar, 12), dtype=bool), [], []
    for k in range(bars):
        group = groups[k % len(groups)]
        if group == ["%"]:
            group = before or ["N"]
        for j, symbol in enumerate(group):
            if symbol.upper() in ("N", "N.C.", "NC"):
                continue
            a, z = k * S + j * S // len(group), k * S + (j + 1) * S // len(group)
            tones[a:z, list(chord_tones(symbol))] = True
        names.append(" ".join(group))
        before = group
    return Harmony(first_bar * S, tones, names)


def estimate_chords(notes, positions_per_beat: int, first_bar: int, bars: int, steps_per_bar: int) -> Harmony:
    """The likeliest major or minor triad on each half bar of a melody's ``notes`` (barnote.Notes:
    onsets and durations in beats), over ``bars`` bars of ``steps_per_bar`` from ``first_bar``."""
    from ..codecs.common import estimate_key, scale_pitch_classes

    S, half, ppb = steps_per_bar, steps_per_bar // 2, positions_per_beat
    n = bars * 2
    beats = np.zeros((n, 12))  # beats of melody per (half bar, pitch class)
    lo = first_bar * S / ppb  # beats
    for onset, dur, pitch in zip(notes.onset.tolist(), notes.duration.tolist(), notes.pitch.tolist()):
        a, z = (onset - lo) * ppb / half, (onset + dur - lo) * ppb / half  # in half bars
        for w in range(max(int(a), 0), min(int(np.ceil(z)), n)):
            beats[w, pitch % 12] += (min(z, w + 1) - max(a, w)) * half / ppb
    pairs = beats.reshape(bars, 2, 12)
    beats = (pairs + BAR_CONTEXT * pairs[:, ::-1]).reshape(n, 12)
    scale = scale_pitch_classes(*estimate_key(notes.pitch, notes.duration)) if len(notes.pitch) else set(range(12))
    in_key = np.array([all(t in scale for t in np.flatnonzero(row)) for row in _TONES])
    score = beats @ _TONES.T - OFF_WEIGHT * beats @ (1 - _TONES).T + KEY_BONUS * in_key  # (n, 24)
    path, before = [], None
    for w in range(n):
        s = score[w].copy()
        if before is not None:
            s[before] += HOLD_BONUS
        before = before if before is not None and not beats[w].any() else int(s.argmax())
        path.append(before)
    tones = np.repeat(_TONES[path].astype(bool), [half, S - half] * bars, axis=0)
    label = [NAMES[TRIADS[i][0]] + TRIADS[i][1] for i in path]
    names = [a if a == b else f"{a} {b}" for a, b in zip(label[::2], label[1::2])]
    return Harmony(first_bar * S, tones, names, ESTIMATED_PULL)
