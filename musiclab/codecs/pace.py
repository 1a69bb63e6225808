"""What the music around a take is like, for the bar/note sampler to keep to (codecs/barnote_state.py).

* :class:`Pace`: notes and onsets per grid step, and the shares of pitch classes and note lengths
  (as written: a take pedals on its own), of the seed's last bars (continue), the bars either side of a
  span (infill), or POP909's accompaniments of a melody like the one given (accompany);
* :func:`one_line`: whether the music is a tune alone (one note at a time), and its range, so a
  take of it stays one line in that register (:func:`in_register`);
* :func:`pedal_pattern`: the sustain pedal of the seed's last bars, which a continuation repeats
  (:func:`looped`), so its notes, as written as the seed's are, sound held as the seed's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pretty_midi

from .barnote import BarNoteCodec
from .common import merged, pedal_spans

PACE_BARS = 8  # bars of the surrounding music whose pace a take keeps
LINE_RANGE = 7  # semitones a one-line seed's continuation may go past the seed's own range
PEDAL_BARS = 2  # bars of the seed whose pedalling a continuation repeats


@dataclass
class Pace:
    """How busy some music is on the bar/note grid, with which pitch classes and note lengths."""

    notes: float  # notes per grid step
    onsets: float  # onsets (steps with a note) per grid step
    # share of the notes in each pitch class C..B (smoothed); None: any
    palette: tuple[float, ...] | None = (1 / 12,) * 12
    # share of the notes in each duration bin (smoothed; as written, the pedal not applied); None: any
    durations: tuple[float, ...] | None = None

    def __post_init__(self):
        if not (self.notes >= self.onsets > 0):
            raise ValueError(f"expected notes >= onsets > 0 per step, got {self.notes} and {self.onsets}")
        if self.palette is not None and (len(self.palette) != 12 or not _are_shares(self.palette)):
            raise ValueError(f"expected 12 finite pitch-class shares summing to 1, got {self.palette}")
        if self.durations is not None and not _are_shares(self.durations):
            raise ValueError(f"expected finite duration-bin shares summing to 1, got {self.durations}")


def _are_shares(x: tuple[float, ...]) -> bool:
    return bool(np.isfinite(x).all()) and abs(sum(x) - 1) < 1e-6


def pace_of(codec: BarNoteCodec, q: np.ndarray, windows: list[tuple[int, int]]) -> Pace | None:
    """The :class:`Pace` of quantized rows ``q`` with onsets in the ``windows`` [lo, hi) steps,
    each cut to the bars that hold music (a window reaching before the first bar or past the
    last is not counted as silence); None without notes there."""
    if not len(q):
        return None
    S = codec.steps_per_bar
    first, last = q[:, 0].min() // S * S, (q[:, 0].max() // S + 1) * S
    windows = [(max(lo, first), min(hi, last)) for lo, hi in windows]
    steps = sum(max(hi - lo, 0) for lo, hi in windows)
    rows = np.concatenate([q[(q[:, 0] >= lo) & (q[:, 0] < hi)] for lo, hi in windows])
    if steps <= 0 or not len(rows):
        return None
    _, first_of = np.unique(rows[:, :2], axis=0, return_index=True)  # a unison across tracks is one note, as written
    notes = rows[first_of]
    palette = (np.bincount(notes[:, 1] % 12, minlength=12) + 0.5) / (len(notes) + 6)  # half a note each: none is 0
    bins = codec.dur_bin_of[notes[:, 2]]
    durations = (np.bincount(bins, minlength=codec.n_dur) + 0.5) / (len(notes) + codec.n_dur / 2)
    onsets = len(np.unique(notes[:, 0])) / steps
    return Pace(len(notes) / steps, onsets, tuple(palette.tolist()), tuple(durations.tolist()))


def one_line(codec: BarNoteCodec, q: np.ndarray, least: int = 8) -> tuple[int, int] | None:
    """(lowest, highest pitch) of quantized rows ``q`` (codec.quantize) that are one line: ``least``
    notes or more, one at a time (each over before the next starts, within a sixteenth); None for
    chords, several voices, or too few notes to tell."""
    if len(q) < least:
        return None
    q = q[np.argsort(q[:, 0], kind="stable")]
    overlap = q[:-1, 0] + codec.dur_of[q[:-1, 2]] - q[1:, 0]  # steps each note sounds into the next
    if (np.diff(q[:, 0]) == 0).any() or (overlap > 3).any():  # 3 steps: a sixteenth at 12 a beat
        return None
    return int(q[:, 1].min()), int(q[:, 1].max())


def in_register(codec: BarNoteCodec, line: tuple[int, int]) -> np.ndarray:
    """(V,) bool: ids other than notes, and notes within LINE_RANGE of a line's (lowest, highest) pitch."""
    lo, hi = line
    return (codec.pitch_of < 0) | ((codec.pitch_of >= lo - LINE_RANGE) & (codec.pitch_of <= hi + LINE_RANGE))


Pedal = tuple[int, tuple[tuple[float, float], ...]]  # (period in grid steps, down spans [from, to) within it)


def pedal_pattern(codec: BarNoteCodec, pm: pretty_midi.PrettyMIDI, end_step: int) -> Pedal:
    """The sustain pedal (CC 64 >= 64, any track of ``pm``) over the PEDAL_BARS bars before the bar
    holding ``end_step``, as down spans in grid steps from the first of those bars; an empty
    pattern when the seed ends in its first bar or its pedal is up all through those bars."""
    S, last = codec.steps_per_bar, end_step // codec.steps_per_bar
    first = max(last - PEDAL_BARS, 0)
    if last == first:
        return S, ()
    lo, hi = first * S, last * S
    spans = [(_step_of(pm, a, codec), _step_of(pm, b, codec)) for a, b in pedal_spans(pm.instruments)]
    return hi - lo, tuple((max(a, lo) - lo, min(b, hi) - lo) for a, b in spans if b > lo and a < hi)


def _step_of(pm: pretty_midi.PrettyMIDI, seconds: float, codec: BarNoteCodec) -> float:
    """Grid step (from the file's bar 0) of a time in seconds through ``pm``'s tempo map; inf stays inf."""
    if math.isinf(seconds):
        return seconds
    return pm.time_to_tick(seconds) / pm.resolution * codec.config.positions_per_beat


def looped(pattern: Pedal, start: int, lo: float, hi: float) -> list[tuple[float, float]]:
    """``pattern``'s down spans repeated every period from grid step ``start`` (a bar line), those
    within [lo, hi) grid steps, clipped there (spans that overlap joined)."""
    period, spans = pattern
    out = []
    for k in range(max(math.ceil((hi - start) / period), 0)):
        out += [(max(start + k * period + a, lo), min(start + k * period + b, hi)) for a, b in spans]
    return merged([(a, b) for a, b in out if b > a])
