"""What every codec shares: the piano range, key estimate and scale, copying a seed's tracks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pretty_midi

LOW, HIGH = 21, 108  # piano range, MIDI pitch numbers
KEY_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(pitches: np.ndarray, durations: np.ndarray | None = None) -> tuple[int, str]:
    """Krumhansl-Schmuckler key estimate. Returns (tonic pitch class 0-11, "major"|"minor")."""
    hist = np.bincount(np.asarray(pitches, dtype=int) % 12, weights=durations, minlength=12).astype(float)
    if hist.sum() == 0:
        return 0, "major"
    best = (-2.0, 0, "major")
    for mode, prof in (("major", _MAJOR), ("minor", _MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(prof, tonic))[0, 1]
            if np.isfinite(r) and r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def scale_pitch_classes(tonic: int, mode: str) -> set[int]:
    """Pitch classes of the (natural/harmonic) scale: minor includes the raised 7th."""
    steps = [0, 2, 4, 5, 7, 9, 11] if mode == "major" else [0, 2, 3, 5, 7, 8, 10, 11]
    return {(tonic + s) % 12 for s in steps}


def fold_pitch(pitch: int) -> int:
    """Move ``pitch`` by octaves into the piano range LOW-HIGH."""
    while pitch < LOW:
        pitch += 12
    while pitch > HIGH:
        pitch -= 12
    return pitch


MIN_PEDAL_S = 0.01  # a shorter press is left out: its press and lift could share a MIDI tick, lift first


def pedal_spans(instruments: list[pretty_midi.Instrument]) -> list[tuple[float, float]]:
    """The sustain pedal's down spans [(down, up)] in seconds over ``instruments`` (CC 64 >= 64 is
    down; a lift and a press at one instant are a change; a press never lifted: up at inf), sorted,
    those that overlap joined."""
    spans = []
    for inst in instruments:
        down = None
        for c in sorted((c for c in inst.control_changes if c.number == 64), key=lambda c: (c.time, c.value)):
            if c.value >= 64 and down is None:
                down = c.time
            elif c.value < 64 and down is not None:
                spans.append((down, c.time))
                down = None
        if down is not None:
            spans.append((down, math.inf))
    return merged(spans)


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted spans with those that overlap joined (spans that only meet stay two: a pedal change)."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def add_pedal(inst: pretty_midi.Instrument, spans: list[tuple[float, float]], until: float) -> None:
    """Put the sustain pedal (CC 64) down on ``inst`` over ``spans`` [(down, up)] seconds, each
    lifted by ``until``."""
    for a, b in spans:
        b = min(b, until)
        if b - a >= MIN_PEDAL_S:
            inst.control_changes += [pretty_midi.ControlChange(64, 127, a), pretty_midi.ControlChange(64, 0, b)]


def copy_instrument(inst: pretty_midi.Instrument, pedal_until: float | None = None) -> pretty_midi.Instrument:
    """A copy of ``inst``'s notes (not its controls or bends) for a take's seed part; with
    ``pedal_until`` (seconds), its sustain pedal too, lifted there."""
    c = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
    c.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in inst.notes]
    if pedal_until is not None:
        add_pedal(c, pedal_spans([inst]), pedal_until)
    return c


@dataclass
class SeedTraits:
    """What a continuation takes over from its seed excerpt."""

    bpm: float  # tempo in force at the seed end (120 without tempo events), quarter notes per minute
    velocity: int  # median velocity of the seed's notes (80 without notes), 1-127
    program: int  # GM program of the seed's first track (0 without tracks)
    key: tuple[int, str]  # duration-weighted key estimate (tonic pitch class 0-11, mode)


def seed_traits(excerpt: pretty_midi.PrettyMIDI, seed_seconds: float) -> SeedTraits:
    """Tempo, velocity, program and key of a seed excerpt ending at ``seed_seconds``."""
    times, tempi = excerpt.get_tempo_changes()
    bpm = float(tempi[np.searchsorted(times, seed_seconds, side="right") - 1]) if len(tempi) else 120.0
    notes = [n for inst in excerpt.instruments for n in inst.notes]
    velocity = int(np.median([n.velocity for n in notes])) if notes else 80
    key = estimate_key(np.array([n.pitch for n in notes]), np.array([n.end - n.start for n in notes]))
    program = excerpt.instruments[0].program if excerpt.instruments else 0
    return SeedTraits(bpm, velocity, program, key)


def with_continuation(excerpt: pretty_midi.PrettyMIDI, bpm: float, program: int, events, end_step: int,
                      origin_seconds: float, seconds_per_step: float, end_seconds: float,
                      pedal: list[tuple[float, float]] | None = None) -> pretty_midi.PrettyMIDI:  # fmt: skip
    """The seed excerpt's notes plus a "musiclab continuation" track of ``events`` (onset step,
    pitch, velocity, duration steps): only onsets from ``end_step`` on and before ``end_seconds``,
    step s playing at ``origin_seconds + s * seconds_per_step``, ends clipped to ``end_seconds``.
    ``pedal`` (bar/note takes): the seed's tracks keep their sustain pedal (lifted at the seed's
    end) and the continuation's goes down over these [from, to) grid-step spans."""
    out = pretty_midi.PrettyMIDI(resolution=excerpt.resolution, initial_tempo=bpm)
    lift = None if pedal is None else origin_seconds + end_step * seconds_per_step  # bar/note: the seed's pedal too
    out.instruments = [copy_instrument(i, pedal_until=lift) for i in excerpt.instruments]
    out.time_signature_changes = list(excerpt.time_signature_changes)
    new = pretty_midi.Instrument(program=program, name="musiclab continuation")
    for step, pitch, vel, dur in events:
        t0 = origin_seconds + step * seconds_per_step
        if step < end_step or t0 >= end_seconds:
            continue
        new.notes.append(pretty_midi.Note(int(vel), int(pitch), t0, min(t0 + dur * seconds_per_step, end_seconds)))
    spans = [(origin_seconds + a * seconds_per_step, origin_seconds + b * seconds_per_step) for a, b in pedal or []]
    add_pedal(new, spans, end_seconds)
    out.instruments.append(new)
    return out
