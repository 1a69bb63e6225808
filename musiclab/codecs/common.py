"""What every codec shares: the piano range, key estimate and scale, copying a seed's tracks."""

from __future__ import annotations

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


def copy_instrument(inst: pretty_midi.Instrument, pedal_until: float | None = None) -> pretty_midi.Instrument:
    """A copy of ``inst``'s notes (not its controls or bends) for a take's seed part; with
    ``pedal_until`` (seconds), its sustain pedal too, lifted there."""
    c = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
    c.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in inst.notes]
    if pedal_until is not None:
        c.control_changes = [pretty_midi.ControlChange(64, x.value, x.time) for x in inst.control_changes
                             if x.number == 64 and x.time < pedal_until]  # fmt: skip
        if c.control_changes:
            c.control_changes.append(pretty_midi.ControlChange(64, 0, pedal_until))
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
    at = lambda step: origin_seconds + step * seconds_per_step  # noqa: E731
    out = pretty_midi.PrettyMIDI(resolution=excerpt.resolution, initial_tempo=bpm)
    lift = None if pedal is None else at(end_step)  # bar/note takes keep the seed's pedal, up at its end
    out.instruments = [copy_instrument(i, pedal_until=lift) for i in excerpt.instruments]
    out.time_signature_changes = list(excerpt.time_signature_changes)
    new = pretty_midi.Instrument(program=program, name="musiclab continuation")
    for step, pitch, vel, dur in events:
        t0 = at(step)
        if step < end_step or t0 >= end_seconds:
            continue
        new.notes.append(pretty_midi.Note(int(vel), int(pitch), t0, min(t0 + dur * seconds_per_step, end_seconds)))
    for a, b in pedal or []:
        if at(a) < end_seconds:
            new.control_changes += [pretty_midi.ControlChange(64, 127, at(a)),
                                    pretty_midi.ControlChange(64, 0, min(at(b), end_seconds))]  # fmt: skip
    out.instruments.append(new)
    return out
