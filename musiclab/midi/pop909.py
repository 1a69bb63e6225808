"""POP909's annotations (beats, chords) and the shift that puts its songs' first downbeat on a bar line
(its MIDI files start at an arbitrary offset from the music's bars)."""

from __future__ import annotations

import copy
from collections.abc import Callable
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


def aligned(pm: pretty_midi.PrettyMIDI, path: Path) -> tuple[pretty_midi.PrettyMIDI, Callable]:
    """(the song moved later by whole ticks, tempo map and all, so its first annotated downbeat
    falls on a bar line as in training; a function from the file's seconds to the moved song's,
    for its annotations). Ticks, not seconds: a song whose tempo changes keeps its beats on the grid."""
    qpm = float(pm.get_tempo_changes()[1][0])
    dt = int(round(bar_shift(path.with_name("beat_midi.txt"), qpm) * pm.resolution))
    out = copy.deepcopy(pm)
    out._tick_scales = [pm._tick_scales[0]] + [(t + dt, s) for t, s in pm._tick_scales[1:]]
    out._update_tick_to_time(pm.time_to_tick(pm.get_end_time()) + dt + 1)

    def move(seconds: float) -> float:
        return float(out.tick_to_time(int(pm.time_to_tick(seconds)) + dt))

    for inst in out.instruments:
        for n in inst.notes:
            n.start, n.end = move(n.start), move(n.end)
        for c in inst.control_changes:
            c.time = move(c.time)
    for ev in out.time_signature_changes[1:] + out.key_signature_changes[1:]:
        ev.time = move(ev.time)
    return out, move


def read_chords(path: Path, move: Callable = float) -> list:
    """chord_midi.txt -> [(start, end, frozenset of pitch classes, or None for no chord)], its
    times (seconds) passed through ``move`` (``aligned``'s, for a moved song)."""
    import mir_eval.chord  # Harte labels such as "A:sus4(b7)" or "E:min/b3"

    out = []
    for line in path.read_text().splitlines():
        a, b, label = line.split()
        root, bitmap, bass = mir_eval.chord.encode(label)
        pcs = None if root < 0 else frozenset({(root + i) % 12 for i in np.flatnonzero(bitmap)} | {(root + bass) % 12})
        out.append((move(float(a)), move(float(b)), pcs))
    return out
