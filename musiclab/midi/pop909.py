"""POP909's annotations (beats, chords) and the shift that puts its songs' first downbeat on a bar line
(its MIDI files start at an arbitrary offset from the music's bars)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pretty_midi


def bar_shift(beat_file: Path, qpm: float | None) -> float:
    """Beats to add so POP909's first annotated downbeat falls on a bar line (its MIDI files
    start at an arbitrary offset from the music's bars; the tick grid itself is the song's).
    ``qpm``: the song's first tempo, quarter notes a minute."""
    try:
        rows = np.loadtxt(beat_file, ndmin=2)
    except (OSError, ValueError):
        return 0.0
    down = rows[rows[:, 2] == 1, 0] if rows.shape[1] >= 3 else []
    if not len(down) or not qpm:
        return 0.0
    beat = float(down[0]) * qpm / 60.0
    return float((-beat) % 4.0)


def aligned(pm: pretty_midi.PrettyMIDI, path: Path) -> pretty_midi.PrettyMIDI:
    """The song moved later so its first annotated downbeat falls on a bar line (as in training);
    ``pm.musiclab_shift`` holds the seconds added, for its annotations."""
    qpm = float(pm.get_tempo_changes()[1][0])
    shift = bar_shift(path.with_name("beat_midi.txt"), qpm) * 60.0 / qpm
    out = copy.deepcopy(pm)
    for inst in out.instruments:
        for n in inst.notes:
            n.start, n.end = n.start + shift, n.end + shift
        for c in inst.control_changes:
            c.time += shift
    out.musiclab_shift = shift
    return out


def read_chords(path: Path, shift: float) -> list:
    """chord_midi.txt -> [(start, end, frozenset of pitch classes, or None for no chord)]."""
    import mir_eval.chord  # Harte labels such as "A:sus4(b7)" or "E:min/b3"

    out = []
    for line in path.read_text().splitlines():
        a, b, label = line.split()
        root, bitmap, bass = mir_eval.chord.encode(label)
        pcs = None if root < 0 else frozenset({(root + i) % 12 for i in np.flatnonzero(bitmap)} | {(root + bass) % 12})
        out.append((float(a) + shift, float(b) + shift, pcs))
    return out
