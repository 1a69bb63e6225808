"""The quality benchmark's measures on hand-made continuations whose answers are known."""

from __future__ import annotations

import math

import pretty_midi
import pytest

from musiclab.evaluation.quality import FLOOR, measure, seed_loop

C_MAJOR = [60, 62, 64, 65, 67, 69, 71]


def piece(pitches_at, seconds: float = 40.0, step: float = 0.25, tempo: float = 120.0) -> pretty_midi.PrettyMIDI:
    """Notes every ``step`` s; ``pitches_at(i, t)`` gives the pitches of onset i at time t."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(0)
    for i in range(int(seconds / step)):
        t = i * step
        for p in pitches_at(i, t):
            inst.notes.append(pretty_midi.Note(80, p, t, t + step))
    pm.instruments.append(inst)
    return pm


def scale(i, t):
    return [C_MAJOR[i % 7]]


KEY = (0, "major")


def test_a_piece_against_itself_is_at_zero():
    pm = piece(scale)
    m = measure(pm, pm, 10.0, 30.0, KEY)
    assert m == {"pc_tv": 0.0, "ioi_tv": 0.0, "density": 0.0, "polyphony": 0.0, "in_key": 1.0, "in_key_gap": 0.0}


def test_a_tritone_away_shares_two_of_seven_pitch_classes():
    real, far = piece(scale, step=0.25), piece(lambda i, t: [C_MAJOR[i % 7] + 6])
    m = measure(far, real, 10.0, 28.0, KEY)  # 28 s = 112 onsets = 16 whole scales: equal shares
    assert m["pc_tv"] == pytest.approx(5 / 7)
    assert m["in_key"] == pytest.approx(2 / 7) and m["in_key_gap"] == pytest.approx(5 / 7)
    assert m["density"] == 0.0 and m["polyphony"] == 0.0


def test_twice_as_busy_and_twice_as_thick():
    real = piece(scale, step=0.5)
    busy = piece(scale, step=0.25)
    thick = piece(lambda i, t: [C_MAJOR[i % 7], C_MAJOR[i % 7] + 12], step=0.5)
    assert measure(busy, real, 10.0, 30.0, KEY)["density"] == pytest.approx(1.0)
    assert measure(busy, real, 10.0, 30.0, KEY)["polyphony"] == pytest.approx(0.0)
    t = measure(thick, real, 10.0, 30.0, KEY)
    assert t["polyphony"] == pytest.approx(1.0) and t["density"] == pytest.approx(1.0)
    assert t["ioi_tv"] == 0.0  # same onsets, more notes on each
    assert measure(busy, real, 10.0, 30.0, KEY)["ioi_tv"] == pytest.approx(1.0)  # 8ths vs quarters (at 120 bpm)


def test_silence_gets_a_finite_ratio_from_the_floors():
    real = piece(scale, step=0.5)
    silent = piece(lambda i, t: [] if t >= 10 else [60], step=0.5)
    m = measure(silent, real, 10.0, 30.0, KEY)
    assert m["density"] == pytest.approx(math.log2(2.0 / FLOOR["density"]))
    assert m["pc_tv"] == 1.0 and m["in_key"] == 0.0


def test_seed_loop_repeats_the_last_ten_seconds():
    pm = piece(lambda i, t: [60 + int(t)], step=0.5)
    loop = seed_loop(pm, 20.0, 30.0)
    got = sorted((round(n.start, 6), n.pitch) for n in loop.instruments[0].notes if n.start >= 20)
    want = sorted((round(t + 10 * k, 6), 60 + int(t)) for k in (1, 2, 3) for t in [10 + 0.5 * j for j in range(20)])
    assert got == want
    assert all(n.start < 20 for n in loop.instruments[0].notes if n.start < 20)
