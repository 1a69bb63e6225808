"""The chords an accompaniment follows: given as chord symbols per bar, or estimated from the melody.

A :class:`Harmony` holds the pitch classes of the chord sounding at each grid step of a span;
the accompaniment's sampler pulls its notes towards them (``BarNoteState.keep_harmony``).
Bars are the file's own (its meter and tempo map: ``bars_of``), so a 3/4 piece gets a chord
each three beats. Chord symbols are read by music21 after the spellings musicians type are
mapped to its own (``Bb``, ``F♯m``, ``C-7`` for C minor 7, ``CΔ7``, ``C°``, ``Bm7(b5)``, ``N.C.``).
Estimated chords come from the chord model shipped with the flagship (editing/chordnet.py): each
half bar gets the major or minor triad with the best log-odds plus the rules' evidence (its name),
and each pitch class a pull as sure as the triads holding it are likely (``shares``: where C major
and A minor are both likely, C and E are pulled hard, G and A less). The
rules alone, without that model, score the 24 triads on each half bar (time spent on chord
tones minus time off them, with a small bonus for chords of the melody's key); a bar without
melody keeps the chord before it (bars before the melody's first note take its first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pretty_midi

from ..generation.sampling import SettingsError
from .chordnet import ChordNet, triad_probs
from .triads import TONES as _TONES
from .triads import TRIADS, half_edges, melody_beats

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # C major / A minor's usual names
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
GIVEN_PULL = 3.0  # nats of logit a note of a given chord gains (tuned on POP909 songs the benchmark does not use)
ESTIMATED_PULL = 2.0  # less for an estimated chord, which may be wrong (the rules')
LEARNED_PULL = 6.0  # for chords the chord model reads, x share ** SHARE_POWER (tuned as GIVEN_PULL)
SHARE_POWER = 2.0  # the pull follows share ** this: a pitch class the model is unsure of is pulled far less
RULE_WEIGHT = 3.0  # nats of log-odds a beat of the rules' evidence is worth (plain arpeggios get their chords)
OFF_WEIGHT = 1.0  # a beat of melody off the chord costs as much as a beat on it gains
KEY_BONUS = 0.5  # beats' worth of evidence for a chord of the melody's key
BAR_CONTEXT = 0.5  # weight of the other half of the bar in a half bar's evidence (two notes rarely name a chord)
HOLD_BONUS = 0.25  # beats' worth of evidence for keeping the chord of the half bar before
NO_CHORD = {"N", "NC", "N.C", "N.C."}
MAX_SHOWN = 24  # characters of a bad symbol quoted back


@dataclass
class Harmony:
    """Chords on the grid: ``tones[k]`` (12,) bool are the pitch classes sounding at step
    ``first_step + k`` (none: no chord there); ``names`` one label per bar, for people. Chords the
    chord model read also hold ``shares``: how much of its odds each pitch class has, which the
    pull follows (``weights_at``)."""

    first_step: int
    tones: np.ndarray  # (steps, 12) bool
    names: list[str]
    pull: float = GIVEN_PULL  # nats of logit a chord tone gains, at most (x weights_at: BarNoteState.keep_harmony)
    unused: int = 0  # bars of given chords past the span
    estimated: bool = False  # from the melody (estimate_chords), not given
    by: str = ""  # estimated: "chord model", or why the rules named them
    looped: bool = False  # fewer bars of chords were given than the span holds: they repeat
    shares: np.ndarray | None = None  # chord model: (steps, 12) each pitch class's share of the triads' odds

    def at(self, steps: np.ndarray) -> np.ndarray:
        """(B, 12) bool: the chord at each of ``steps`` (B,) (none outside the span)."""
        return self._rows(self.tones, steps, bool)

    def weights_at(self, steps: np.ndarray) -> np.ndarray:
        """(B, 12) in [0, 1]: the share of ``pull`` each pitch class gets at each of ``steps`` (B,):
        ``shares`` ** SHARE_POWER where the chord model read the chords, else 1 on the chord's tones."""
        if self.shares is None:
            return self._rows(self.tones, steps, float)
        return self._rows(self.shares, steps, float) ** SHARE_POWER

    def _rows(self, table: np.ndarray, steps: np.ndarray, dtype) -> np.ndarray:
        k = np.asarray(steps) - self.first_step
        inside = (k >= 0) & (k < len(table))
        out = np.zeros((len(k), 12), dtype=dtype)
        out[inside] = table[k[inside]]
        return out


def names_in(key: tuple[int, str]) -> tuple[str, ...]:
    """Names of the 12 roots as a key's signature spells them: sharps in G, D, A, E, B, F# major
    (and their relative minors), flats in F, Bb, Eb, Ab, Db, else C major's usual names."""
    tonic, mode = key
    fifths = (tonic + (3 if mode == "minor" else 0)) * 7 % 12  # the relative major's place on the circle
    return SHARP_NAMES if 1 <= fifths <= 6 else FLAT_NAMES if fifths >= 7 else NAMES


def bars_of(pm: pretty_midi.PrettyMIDI, s0: int, s1: int, positions_per_beat: int) -> tuple[int, list[tuple[int, int]]]:
    """(number of the first bar, 1-based; [lo, hi) grid steps of each of the file's bars that
    overlap steps [s0, s1)), from its downbeats (meter and tempo map), the last bar's length
    repeated past the file's end. A span starting within a 16th before a bar line starts in that bar."""
    ticks = pm.resolution / positions_per_beat
    downs = sorted({int(round(pm.time_to_tick(t) / ticks)) for t in pm.get_downbeats()} | {0})
    size = downs[-1] - downs[-2] if len(downs) > 1 else 4 * positions_per_beat
    while downs[-1] < s1:
        downs.append(downs[-1] + size)
    first = max(int(np.searchsorted(downs, s0, side="right")) - 1, 0)
    if downs[first + 1] - s0 <= positions_per_beat // 4 and downs[first + 1] < s1:
        first += 1  # a span starting a 16th or less before a bar line starts there, as a musician counts
    bars = [(a, z) for a, z in zip(downs[first:], downs[first + 1 :]) if a < s1]
    return first + 1, bars


def _spelled(symbol: str) -> str:
    """A symbol as musicians type it -> music21's spelling (``-`` is its flat; a jazz ``-`` is minor)."""
    s = symbol.strip().replace("♭", "b").replace("♯", "#").replace("°", "dim").replace("ø", "m7b5")
    s = re.sub("[Δ△]7?", "maj7", s)
    s = re.sub(r"\((.*)\)", r"\1", s)  # Bm7(b5) -> Bm7b5
    s = re.sub(r"^([A-Ga-g][#b]?)-", r"\1m", s)  # C-7: C minor 7
    s = re.sub(r"(^|/)([A-Ga-g])b", lambda m: m[1] + m[2].upper() + "-", s)  # Bb/Db -> B-/D-
    return s[:1].upper() + s[1:]


def chord_tones(symbol: str) -> frozenset[int]:
    """Pitch classes of a chord symbol, or a SettingsError saying what is accepted."""
    tones = _tones(symbol)
    if tones is None:
        raise _not_chords([symbol])
    return tones


def _tones(symbol: str) -> frozenset[int] | None:
    from music21 import harmony

    try:
        return frozenset(p.pitchClass for p in harmony.ChordSymbol(_spelled(symbol)).pitches)
    except Exception:  # music21 raises ValueError, KeyError or its own errors on a bad symbol
        return None


def _not_chords(symbols: list[str]) -> SettingsError:
    """The error for symbols that are not chords: each quoted (cut short), then what is accepted."""
    shown = [repr(w if len(w) <= MAX_SHOWN else w[:MAX_SHOWN] + "...") for w in symbols[:4]]
    which = f"{shown[0]} is not a chord symbol" if len(shown) == 1 else f"{', '.join(shown)} are not chord symbols"
    which += f" (and {len(symbols) - 4} more)" if len(symbols) > 4 else ""
    return SettingsError(f"{which}; expected e.g. C, Am, F#m7, Bb/D, G7sus4, N.C. for no chord, % to repeat the "
                         "bar before; chords are separated by spaces, a bar each, or by | or a new line between bars")  # fmt: skip


def parse_chords(text: str, bars: list[tuple[int, int]]) -> Harmony:
    """Chord symbols, a bar each ("C Am F G"; commas separate as spaces do), or "C | Am | F G | G7"
    where chords sharing a bar split it evenly and an empty bar holds the chord before (as % does
    for a bar, or for the chord before it within one): a Harmony over
    ``bars`` ([lo, hi) grid steps each). Fewer bars of chords than ``bars`` repeat from the
    first, as a loop; every symbol is checked, those past the span are counted as unused. A line
    break is a bar line too (with or without a | at either end of the line)."""
    text = text.replace(",", " ")
    if "|" in text:
        text = re.sub(r"\s*\|?[ \t]*\n\s*\|?\s*", " | ", text.strip())
    if re.search(r"(^|\s)-(\s|$)", text):
        raise SettingsError("a lone '-' is not read; write % to hold the chord for a bar, and separate chords "
                            "with spaces (a bar each) or | between bars")  # fmt: skip
    rows = text.strip().strip("|").split("|") if "|" in text else text.split()
    groups = [r.split() or ["%"] for r in rows]
    if all(w == "%" for g in groups for w in g):
        raise SettingsError("no chords were given; expected chord symbols, a bar each, e.g. C Am F G")
    symbols = dict.fromkeys(w for g in groups for w in g if w.upper() not in NO_CHORD and w != "%")
    known = {w: _tones(w) for w in symbols}  # each distinct symbol read once
    if bad := [w for w, tones in known.items() if tones is None]:  # every one named, not only the first
        raise _not_chords(bad)
    lo = bars[0][0]
    tones, names, before = np.zeros((bars[-1][1] - lo, 12), dtype=bool), [], ["N"]
    for k, (a, z) in enumerate(bars):
        group = groups[k % len(groups)]
        if group == ["%"]:
            group = before
        else:  # a % sharing a bar repeats the chord just before it
            group = list(group)
            for j, w in enumerate(group):
                group[j] = (group[j - 1] if j else before[-1]) if w == "%" else w
        cuts = [a - lo + j * (z - a) // len(group) for j in range(len(group) + 1)]  # chords sharing the bar
        for j, symbol in enumerate(group):
            if known.get(symbol) is not None:
                tones[cuts[j] : cuts[j + 1], list(known[symbol])] = True
        names.append(" ".join(group))
        before = group
    return Harmony(lo, tones, names, unused=max(len(groups) - len(bars), 0), looped=len(groups) < len(bars))


def estimate_chords(notes, positions_per_beat: int, bars: list[tuple[int, int]], net: ChordNet | str | None) -> Harmony:
    """The chords of each half of each bar ([lo, hi) grid steps) of a melody's ``notes``
    (barnote.Notes: onsets and durations in beats): the triad the chord model ``net``
    (chordnet.py) finds likeliest, its log-odds plus RULE_WEIGHT x the rules' evidence (so a bar
    that spells a chord outright gets it), with each pitch class's share of those odds, normalised
    over the 24 triads (``shares``); by the rules alone when ``net`` is None or the reason it is missing."""
    beats, evidence, key = _rule_evidence(notes, positions_per_beat, bars)
    if not isinstance(net, ChordNet) or not beats.any():  # no melody in the span: nothing to read
        h = rule_chords(notes, positions_per_beat, bars)
        h.by = net if isinstance(net, str) else "rules"
        return h
    score = np.log(triad_probs(net, notes, positions_per_beat, bars) + 1e-9) + RULE_WEIGHT * evidence  # (halves, 24)
    path = score.argmax(-1)
    halves = half_edges(bars) - bars[0][0]
    tones = np.repeat(_TONES[path] > 0, np.diff(halves), axis=0)
    post = np.exp(score - score.max(-1, keepdims=True))  # each triad's odds, the model's and the rules' together
    shares = (post / post.sum(-1, keepdims=True)) @ _TONES  # (half bars, 12)
    spelled = names_in(key)
    label = [spelled[TRIADS[i][0]] + TRIADS[i][1] for i in path]
    names = [a if a == b else f"{a} {b}" for a, b in zip(label[::2], label[1::2])]
    return Harmony(bars[0][0], tones, names, LEARNED_PULL, estimated=True, by="chord model",
                   shares=np.repeat(shares, np.diff(halves), axis=0))  # fmt: skip


def _rule_evidence(notes, positions_per_beat: int, bars: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(beats (half bars, 12) of melody on each pitch class, the other half of the bar at
    BAR_CONTEXT; the rules' score of each of the 24 triads (half bars, 24): beats on its tones
    minus beats off them, KEY_BONUS for a chord of the key; the melody's key)."""
    from ..codecs.common import estimate_key, scale_pitch_classes

    pairs = melody_beats(notes, half_edges(bars) / positions_per_beat).reshape(len(bars), 2, 12)
    beats = (pairs + BAR_CONTEXT * pairs[:, ::-1]).reshape(-1, 12)
    key = estimate_key(notes.pitch, notes.duration) if len(notes.pitch) else (0, "major")
    scale = scale_pitch_classes(*key) if len(notes.pitch) else set(range(12))
    in_key = np.array([all(t in scale for t in np.flatnonzero(row)) for row in _TONES])
    return beats, beats @ _TONES.T - OFF_WEIGHT * beats @ (1 - _TONES).T + KEY_BONUS * in_key, key


def rule_chords(notes, positions_per_beat: int, bars: list[tuple[int, int]]) -> Harmony:
    """The likeliest major or minor triad on each half of each bar ([lo, hi) grid steps) of a
    melody's ``notes`` (barnote.Notes: onsets and durations in beats), by rule."""
    beats, score, key = _rule_evidence(notes, positions_per_beat, bars)
    path, before = [], None
    for w in range(len(beats)):
        s = score[w].copy()
        if before is not None:
            s[before] += HOLD_BONUS
        before = before if not beats[w].any() else int(s.argmax())  # None until the melody starts
        path.append(before)
    first = next((c for c in path if c is not None), None)
    if first is None:  # no melody in the span: no chord to follow
        return Harmony(bars[0][0], np.zeros((bars[-1][1] - bars[0][0], 12), dtype=bool), ["N"] * len(bars), 0.0,
                       estimated=True)  # fmt: skip
    path = [first if c is None else c for c in path]
    halves = half_edges(bars) - bars[0][0]
    tones = np.repeat(_TONES[path].astype(bool), np.diff(halves), axis=0)
    spelled = names_in(key)
    label = [spelled[TRIADS[i][0]] + TRIADS[i][1] for i in path]
    names = [a if a == b else f"{a} {b}" for a, b in zip(label[::2], label[1::2])]
    return Harmony(bars[0][0], tones, names, ESTIMATED_PULL, estimated=True)
