"""The chords an accompaniment follows: chord symbols read per bar, chords estimated from a
melody, and the pull that makes an accompaniment play them."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
from conftest import song

from musiclab.codecs.barnote_state import BarNoteState, notes_from_pm
from musiclab.editing.accompany import NOTES_PER_ONSET, accompaniment_pace, accompany
from musiclab.editing.harmony import NAMES, Harmony, bars_of, chord_tones, names_in, parse_chords, rule_chords
from musiclab.generation.sampling import SettingsError

S = 16  # steps a bar in these hand-made cases


def tones_at(h, step: int) -> set[int]:
    return set(np.flatnonzero(h.at(np.array([step]))[0]).tolist())


def bars(n: int, first: int = 0, size: int = S) -> list[tuple[int, int]]:
    return [(first + k * size, first + (k + 1) * size) for k in range(n)]


def test_chord_symbols_read_per_bar_split_shared_bars_and_loop():
    h = parse_chords("C | Am | F G7 | Bb/D", bars(6, first=2 * S))
    assert h.names == ["C", "Am", "F G7", "Bb/D", "C", "Am"]  # fewer bars of chords than asked: they loop
    assert tones_at(h, 2 * S) == {0, 4, 7} and tones_at(h, 3 * S + 15) == {9, 0, 4}
    assert tones_at(h, 4 * S + 7) == {5, 9, 0} and tones_at(h, 4 * S + 8) == {7, 11, 2, 5}  # halves of one bar
    assert tones_at(h, 5 * S) == {10, 2, 5}  # B flat, written as musicians do
    assert tones_at(h, 2 * S - 1) == set() and tones_at(h, 8 * S) == set()  # outside the span: no chord
    assert h.looped
    h = parse_chords("Dm % N.C. G, C", bars(4))
    assert h.names == ["Dm", "Dm", "N.C.", "G"] and h.unused == 1 and not h.looped
    assert tones_at(h, S) == {2, 5, 9} and tones_at(h, 2 * S) == set()
    h = parse_chords("C | | F %", bars(3))  # an empty bar holds the chord before; so does % within a bar
    assert h.names == ["C", "C", "F F"] and tones_at(h, S + 3) == {0, 4, 7}
    lines = parse_chords("| C | Am | F G7 |\n| Bb/D | % |\nC | | Dm\n", bars(8))  # a line break is a bar line
    assert lines.names == ["C", "Am", "F G7", "Bb/D", "Bb/D", "C", "C", "Dm"]
    assert parse_chords("C Am\nF G", bars(4)).names == ["C", "Am", "F", "G"]


def test_chords_follow_the_files_own_bars():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(80, 60, 0.0, 9.0))  # 18 beats: six bars of 3/4
    pm.instruments.append(inst)
    first, found = bars_of(pm, 4 * 3 + 2, 4 * 12, 4)  # from a step inside bar 2 to the end of bar 4
    assert first == 2 and found == [(12, 24), (24, 36), (36, 48)]  # 3 beats x 4 steps
    h = parse_chords("C G", found)
    assert tones_at(h, 23) == {0, 4, 7} and tones_at(h, 24) == {7, 11, 2}
    assert bars_of(pm, 12 - 1, 48, 4)[0] == 2  # a 16th before bar 2's line: it starts there, as counted
    assert bars_of(pm, 12 - 2, 48, 4)[0] == 1  # an eighth before: in bar 1


@pytest.mark.parametrize("text", ["H7", "C Xyz", "|", "  ", "%", "Q" * 3000])
def test_a_bad_chord_symbol_says_what_is_accepted(text):
    with pytest.raises(SettingsError, match="chord symbol|no chords were given") as e:
        parse_chords(text, bars(4))
    assert "e.g. C" in str(e.value) and len(str(e.value)) < 300


def test_a_lone_dash_is_refused_rather_than_shifting_the_bars():
    with pytest.raises(SettingsError, match="lone '-' is not read; write % to hold"):
        parse_chords("C - F G", bars(4))


def test_the_bars_of_a_file_whose_meter_changes():
    pm = _melody([[60] * 4] * 4)  # 16 beats at 120 bpm
    pm.time_signature_changes += [pretty_midi.TimeSignature(4, 4, 0.0), pretty_midi.TimeSignature(3, 4, 2.0)]
    assert bars_of(pm, 0, 64, 4) == (1, [(0, 16), (16, 28), (28, 40), (40, 52), (52, 64)])


def test_every_given_symbol_is_checked_even_past_the_span():
    with pytest.raises(SettingsError, match="'H7' is not a chord symbol"):
        parse_chords("C Am F G C H7", bars(2))


def test_chord_tones_of_the_spellings_musicians_type():
    assert chord_tones("F#m7") == {6, 9, 1, 4} and chord_tones("Ebmaj7") == {3, 7, 10, 2}
    assert chord_tones("Csus4") == {0, 5, 7} and chord_tones("bb") == {10, 2, 5} and chord_tones("B♭") == {10, 2, 5}
    assert chord_tones("C-7") == chord_tones("Cm7") == {0, 3, 7, 10}  # the jazz minor sign
    assert chord_tones("Bm7(b5)") == chord_tones("Bø") == {11, 2, 5, 9} and chord_tones("C°") == {0, 3, 6}
    assert chord_tones("am") == {9, 0, 4} and chord_tones("F♯m") == {6, 9, 1} and chord_tones("CΔ7") == {0, 4, 7, 11}


def _melody(bars: list[list[int]], tempo: float = 120.0) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(0, name="MELODY")
    beat = 60.0 / tempo
    for b, pitches in enumerate(bars):
        for k, p in enumerate(pitches):  # one note a beat
            inst.notes.append(pretty_midi.Note(90, p, (4 * b + k) * beat, (4 * b + k + 1) * beat))
    pm.instruments.append(inst)
    return pm


def test_chords_estimated_from_an_arpeggiated_melody_are_its_chords():
    pm = _melody([[], [72, 76, 79, 76], [69, 72, 76, 72], [], [65, 69, 72, 77], [67, 71, 74, 79]])
    h = rule_chords(notes_from_pm(pm), 4, bars(6))
    assert h.names == ["C", "C", "Am", "Am", "F", "G"]  # a bar without melody keeps the chord before it
    assert tones_at(h, 0) == {0, 4, 7}  # bars before the melody take its first chord, not the key's first triad
    assert rule_chords(notes_from_pm(_melody([])), 4, bars(2)).names == ["N", "N"]


def test_estimated_chords_are_spelled_as_the_melodys_key_is():
    ab_major = [[68, 72, 75, 72], [73, 77, 80, 77], [75, 79, 82, 79], [68, 72, 75, 80]]  # Ab Db Eb Ab
    assert rule_chords(notes_from_pm(_melody(ab_major)), 4, bars(4)).names == ["Ab", "Db", "Eb", "Ab"]
    e_major = [[64, 68, 71, 68], [69, 73, 76, 73], [71, 75, 78, 75], [64, 68, 71, 76]]  # E A B E
    assert rule_chords(notes_from_pm(_melody(e_major)), 4, bars(4)).names == ["E", "A", "B", "E"]
    cs_minor = [[61, 64, 68, 64], [66, 69, 73, 69], [68, 72, 75, 72], [61, 64, 68, 73]]  # C#m F#m G# C#m
    assert rule_chords(notes_from_pm(_melody(cs_minor)), 4, bars(4)).names == ["C#m", "F#m", "G#", "C#m"]
    assert names_in((8, "major"))[1] == "Db" and names_in((4, "minor"))[6] == "F#" and names_in((9, "minor")) == NAMES


def test_chords_are_estimated_in_the_files_bars_from_any_bar():
    pm = _melody([[60, 64, 67], [57, 60, 64], [65, 69, 72], [67, 71, 74]])  # 3 beats a bar at 120 bpm...
    for n in pm.instruments[0].notes:  # ...written into 3/4 bars
        k = round(n.start / 0.5)
        n.start, n.end = k // 4 * 1.5 + k % 4 * 0.5, k // 4 * 1.5 + k % 4 * 0.5 + 0.5
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    first, found = bars_of(pm, 12, 48, 4)
    assert first == 2 and found == [(12, 24), (24, 36), (36, 48)]
    assert rule_chords(notes_from_pm(pm), 4, found).names == ["Am", "F", "G"]


def test_chords_estimated_from_a_melody_with_passing_notes_are_mostly_right():
    pm = song(9, bars=12)
    pm.instruments = pm.instruments[:1]
    names = rule_chords(notes_from_pm(pm), 4, bars(12)).names
    truth = ["C", "Am", "F", "G"] * 3
    assert sum(a == b for a, b in zip(names, truth)) >= 10, names


def test_the_pull_raises_the_chords_notes_by_its_strength(tiny_model):
    codec = tiny_model.codec
    state = BarNoteState(codec, 2, 0, 4 * codec.steps_per_bar, first_bar=0)
    state.harmony = parse_chords("C F#", [(k * codec.steps_per_bar, (k + 1) * codec.steps_per_bar) for k in range(4)])
    state.bar[:] = [0, 1]
    state.pos[:] = 3
    out = state.keep_harmony(np.zeros((2, codec.vocab_size)))
    notes = codec.pitch_of[codec.note_base :] % 12
    for b, chord in enumerate(({0, 4, 7}, {6, 10, 1})):
        raised = out[b, codec.note_base :] > 0
        assert set(notes[raised].tolist()) == chord
        assert np.allclose(out[b, codec.note_base :][raised], state.harmony.pull)
    assert (out[:, : codec.note_base] == 0).all()  # positions and bar lines are left alone


def test_chords_the_model_read_pull_each_class_by_its_share_squared(tiny_model):
    codec, S = tiny_model.codec, tiny_model.codec.steps_per_bar
    shares = np.zeros((S, 12))
    shares[:, [0, 4]], shares[:, 7], shares[:, 9] = 1.0, 0.5, 0.1  # C and E sure, G half, A barely
    state = BarNoteState(codec, 1, 0, S, first_bar=0)
    state.harmony = Harmony(0, shares > 0.4, ["C"], 6.0, estimated=True, shares=shares)
    state.pos[:] = 2
    out = state.keep_harmony(np.zeros((1, codec.vocab_size)))[0, codec.note_base :]
    by_class = {pc: set(out[codec.pitch_of[codec.note_base :] % 12 == pc].tolist()) for pc in range(12)}
    assert by_class[0] == by_class[4] == {6.0} and by_class[7] == {6.0 * 0.25} and by_class[2] == {0.0}
    (a,) = by_class[9]
    assert a == pytest.approx(6.0 * 0.01)  # share ** SHARE_POWER: a doubtful class is hardly pulled


def test_accompaniment_follows_given_chords_and_says_which(tiny_model):
    pm = song(9, bars=8)
    pm.instruments = pm.instruments[:1]  # C Am F G under the melody
    share = {}
    for chords in (None, "F#"):
        takes = accompany(tiny_model, pm, 0, chords=chords, variations=2, random_seed=3, top_p=0.95)
        notes = [n.pitch % 12 for t in takes for n in t.midi.instruments[-1].notes]
        share[chords] = np.isin(notes, [6, 10, 1]).mean()
        info = takes[0].info
        assert info["chords_from"] == ("melody" if chords is None else "given") and len(info["chords"]) == 8
        assert info["chords_first_bar"] == 1
    assert info["chords"] == ["F#"] * 8
    assert share["F#"] > share[None] + 0.2, share


def test_chords_of_the_wrong_type_or_a_typo_are_refused_before_any_sampling(tiny_model):
    pm = song(9, bars=4)
    with pytest.raises(SettingsError, match="chords = 5 is not accepted; expected chord symbols"):
        accompany(tiny_model, pm, 0, chords=5)
    with pytest.raises(SettingsError, match="'Hm' is not a chord symbol"):
        accompany(tiny_model, pm, 0, chords="C Hm", progress=lambda *a: pytest.fail("sampling started"))
    assert accompany(tiny_model, pm, 0, chords="  ", random_seed=1)[0].info["chords_from"] == "melody"


def test_the_caption_says_when_given_chords_loop():
    from musiclab.app.takes import chords_caption

    info = {"chords_from": "given", "chords_first_bar": 5, "chords": ["C", "G", "C", "G"], "chords_looped": True}
    assert (
        chords_caption(info) == "Chords followed, a bar each from bar 5 (as given, repeated as a loop): C | G | C | G"
    )
    assert "loop" not in chords_caption({**info, "chords_looped": False})


def _even_melody(notes_a_bar: int, bars: int = 4) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0, name="MELODY")
    step = 2.0 / notes_a_bar  # seconds a note: a bar is 2 s at 120 bpm
    inst.notes = [pretty_midi.Note(90, 60 + k % 5, k * step, (k + 1) * step) for k in range(notes_a_bar * bars)]
    pm.instruments.append(inst)
    return pm


def test_the_accompaniment_pace_follows_the_melody_and_the_tempo(tiny_model):
    steps = 4 * 48  # 4 bars at 12 steps a beat
    sparse, busy = (notes_from_pm(_even_melody(n)) for n in (2, 8))
    at = {(n, bpm): accompaniment_pace(m, 12, 0, steps, bpm) for n, m in ((2, sparse), (8, busy)) for bpm in (60, 120)}
    assert at[8, 120].notes > at[2, 120].notes  # a busier melody, a busier accompaniment
    assert at[2, 60].notes > at[2, 120].notes  # and more notes a beat at a slow tempo
    assert all(
        p.palette is None and p.durations is None and p.notes / p.onsets == pytest.approx(NOTES_PER_ONSET)
        for p in at.values()
    )
    assert accompaniment_pace(sparse, 12, steps, 2 * steps, 120) is None  # no melody there: no pace
    # no palette: an accompaniment's pitch classes are the chords' business, not pulled towards all twelve
    state = BarNoteState(tiny_model.codec, 1, 0, steps, first_bar=0, pace=at[2, 120])
    logits = np.random.default_rng(0).normal(size=(1, tiny_model.codec.vocab_size))
    assert np.array_equal(state.keep_palette(logits), logits)
