"""Note/shift tokenizer: MIDI -> ids -> MIDI keeps pitches and onsets within the grid."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from musiclab.codecs.common import estimate_key
from musiclab.codecs.noteshift import NoteTokenizer
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi, seed_excerpt
from tests.conftest import make_midi

TOK = NoteTokenizer()


def _onsets(pm, bpm):
    beat = 60.0 / bpm
    return sorted((round(n.start / beat * 4), n.pitch) for i in pm.instruments for n in i.notes)


def test_vocabulary_layout():
    assert TOK.vocab_size == 1 + 16 + 88 * 8
    assert TOK.decode_events([TOK.note_id(60, 4)]).tolist() == [[0, 60, 4]]
    assert TOK.decode_events([5, TOK.note_id(21, 1), TOK.note_id(108, 16)]).tolist() == [[5, 21, 1], [5, 108, 16]]


@pytest.mark.parametrize("bpm", [60.0, 120.0, 143.0])
def test_round_trip_on_grid_is_exact(bpm):
    beat = 60.0 / bpm
    notes = [(60, 0, beat), (64, 0, beat / 2), (67, beat / 4, beat), (72, 3 * beat, 9 * beat)]  # chord, 16th, rest
    pm = make_midi(notes, tempo=bpm)
    ids = TOK.encode(pm)
    back = TOK.decode(ids, bpm=bpm)
    assert _onsets(back, bpm) == _onsets(pm, bpm)
    durs = sorted((n.pitch, round((n.end - n.start) / beat * 4)) for n in back.instruments[0].notes)
    assert durs == [(60, 4), (64, 2), (67, 3), (72, 16)]  # 24 steps -> the longest bin, 16


@pytest.mark.parametrize("title", list(list_examples()))
def test_round_trip_real_music_within_half_a_step(title):
    pm = load_midi(list_examples()[title])
    ev = TOK.events_from_midi(pm)
    back = TOK.decode_events(TOK.encode(pm))
    # every (onset step, pitch) survives; pitches are within the piano range
    want = {(s - ev[0, 0], p) for s, p, _ in ev}
    got = {(s, p) for s, p, _ in back}
    assert got == want
    # and those steps are the real onsets rounded to the 16th grid (error <= half a step)
    beats = np.array([pm.time_to_tick(n.start) / pm.resolution for i in pm.instruments for n in i.notes])
    assert np.all(np.abs(beats * 4 - np.round(beats * 4)) <= 0.5 + 1e-9)


def test_out_of_range_pitches_fold_into_piano():
    pm = make_midi([(10, 0, 0.5), (120, 0.5, 1.0)])
    back = TOK.decode(TOK.encode(pm))
    assert [n.pitch for n in back.instruments[0].notes] == [22, 108]


def test_estimate_key():
    c_major = np.array([60, 62, 64, 65, 67, 69, 71, 72, 60, 64, 67])
    assert estimate_key(c_major) == (0, "major")
    a_minor = np.array([57, 59, 60, 62, 64, 65, 68, 69, 57, 60, 64, 57])
    assert estimate_key(a_minor) == (9, "minor")


def test_prompt_ends_at_seed_cut():
    pm = seed_excerpt(make_midi(seconds=10), 3.0)  # 120 bpm: 8 steps per second
    prompt = TOK.prompt(pm, 3.0)
    steps = sum(int(TOK.shift_of[i]) for i in prompt.ids)
    first = min(n.start for n in pm.instruments[0].notes)
    assert steps == round((3.0 - first) * 8)
    assert prompt.seconds_per_step == pytest.approx(0.125)
    assert isinstance(TOK.decode(prompt.ids), pretty_midi.PrettyMIDI)


@pytest.mark.parametrize("key_lock", [False, True])
def test_grammar_mask_kept_up_to_date_equals_one_rebuilt_from_scratch(key_lock):
    """DecodeState updates its allowed ids per sampled id; after every id it must equal the
    rule written out afresh: base ids, minus every duration of a pitch already struck on this
    step, minus all notes once a step holds max_notes_per_step onsets; a shift starts over."""
    from musiclab.codecs.common import LOW, scale_pitch_classes

    pm = seed_excerpt(make_midi(seconds=10), 3.0)
    prompt = TOK.prompt(pm, 3.0)
    state = TOK.new_state(3, prompt, seconds=600.0, key_lock=key_lock)
    rng = np.random.default_rng(0)
    nb, nd, full = TOK.note_base, TOK.n_dur, TOK.config.max_notes_per_step
    struck = [set() for _ in range(3)]
    base = np.ones(TOK.vocab_size, bool)
    base[0] = False
    if key_lock:
        pcs = scale_pitch_classes(*prompt.key)
        base &= (TOK.pitch_of < 0) | np.isin(TOK.pitch_of % 12, list(pcs))

    def pick(row):  # an allowed id: a note 85% of the time while any is allowed, else a shift
        notes, shifts = np.flatnonzero(row[nb:]) + nb, np.flatnonzero(row[1:nb]) + 1
        return rng.choice(notes if len(notes) and (rng.random() < 0.85 or not len(shifts)) else shifts)

    for _ in range(400):
        allowed = state.mask().numpy()
        want = np.repeat(base[None], 3, axis=0)
        for b in range(3):
            for p in struck[b]:
                want[b, nb + (p - LOW) * nd : nb + (p - LOW + 1) * nd] = False
            if len(struck[b]) >= full:
                want[b, nb:] = False
        np.testing.assert_array_equal(allowed, want)
        ids = np.array([pick(row) for row in allowed])  # mostly notes: chords reach the cap
        for b, i in enumerate(ids):
            struck[b] = set() if TOK.shift_of[i] else struck[b] | {int(TOK.pitch_of[i])}
        state.advance(ids)
    assert not state.done.any()
