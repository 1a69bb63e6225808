"""The flagship's data, training and jobs: bar/note codec, corpus split, augmentation, resume,
continue / infill / accompany on a small real model trained here."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pretty_midi
import pytest
import torch
from conftest import ROOT, make_song_corpus, song
from safetensors.torch import load_file

from musiclab.codecs import barnote_state
from musiclab.codecs import pace as pace_mod
from musiclab.codecs.barnote import ACCOMP, HIGH, LOW, MELODY, BarNoteCodec, Notes
from musiclab.codecs.barnote_state import UNDER_PULL, BarNoteState, BarNoteTokenizer, notes_from_pm
from musiclab.codecs.pace import Pace, pace_of
from musiclab.editing.accompany import accompany, melody_top
from musiclab.editing.constrained import CannotError
from musiclab.editing.infill import infill
from musiclab.generation.sampling import Sampling, SettingsError, finish, generate, loop, prepare, sample_rows
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi, seed_excerpt
from musiclab.training import corpus as corpus_mod
from musiclab.training.examples import ExampleConfig, augment, make_example, withhold_accompaniment
from musiclab.training.pretrain import PretrainConfig, train


@pytest.fixture(scope="module")
def corpus_dirs(tmp_path_factory):
    return make_song_corpus(tmp_path_factory.mktemp("corpus"))


def test_round_trip_keeps_pitches_and_onsets():
    codec = BarNoteCodec()
    pm = song(1, pedal=True)
    notes = notes_from_pm(pm)
    q = codec.quantize(notes)
    lo, hi = codec.bars_of(q)
    ev = codec.events(codec.encode(q, lo, hi), first_bar=lo - 1)
    want = sorted({(int(round(o * 12)), int(p)) for o, p in zip(notes.onset, notes.pitch)})
    assert sorted(map(tuple, ev[:, :2].tolist())) == want
    # the pedal holds the accompaniment to its release: the longest bin (4 beats = 48 steps)
    acc = ev[ev[:, 1] < 60]
    assert acc[:, 3].max() == 48
    two = codec.events(
        codec.encode(codec.quantize(notes_from_pm(pm, {0: MELODY, 1: 2})), lo, hi, two_track=True), lo - 1
    )
    assert sorted(map(tuple, two[two[:, 4] == MELODY][:, :2].tolist())) == sorted(
        {(int(round(n.start / 0.6 * 12)), n.pitch) for n in pm.instruments[0].notes}
    )


def test_transposition_keeps_every_pitch_in_range():
    cfg = ExampleConfig(transpose=6)
    rng = np.random.default_rng(0)
    for lo, hi in ((21, 108), (23, 100), (30, 105), (60, 60)):
        pitch = np.array([lo, hi, (lo + hi) // 2])
        notes = Notes(np.zeros(3), np.ones(3), pitch, np.full(3, 64), np.zeros(3, dtype=np.int64))
        shifts = {int(augment(notes, "score", rng, cfg).pitch[0] - lo) for _ in range(300)}
        assert shifts == set(range(max(-6, LOW - lo), min(6, HIGH - hi) + 1))


def test_corpus_splits_by_piece_and_counts_broken_files(corpus_dirs, tmp_path):
    c = corpus_mod.build(corpus_dirs, tmp_path, workers=1)
    assert [s["path"] for s in c.skipped] == ["piano/comp/broken.mid"] and "unreadable" in c.skipped[0]["skipped"]
    by_piece = {}
    for f in c.files:
        by_piece.setdefault(f["group"], set()).add(f["split"])
    assert all(len(s) == 1 for s in by_piece.values())  # a group (performances of one piece) is never split
    asap = [f for f in c.files if f["source"] == "asap"]
    assert len({f["group"] for f in asap}) == 4  # the three performances of each piece are found alike
    assert {f["split"] for f in c.files} == {"train", "valid"}
    train_pieces = {f["piece"] for f in c.files if f["split"] == "train"}
    assert not train_pieces & {f["piece"] for f in c.files if f["split"] == "valid"}
    assert corpus_mod.build(corpus_dirs, tmp_path, workers=1).folder == c.folder  # cached


def test_examples_have_the_three_tasks_in_their_grammar(corpus_dirs, tmp_path):
    c = corpus_mod.build(corpus_dirs, tmp_path, workers=1)
    codec, cfg = BarNoteCodec(), ExampleConfig(block_size=256, p_infill=0.5)
    rng = np.random.default_rng(1)
    seen = set()
    for i in range(120):
        f = i % len(c.files)
        ids, task = make_example(codec, c.notes[f], c.files[f]["kind"], rng, cfg)
        seen.add(task)
        assert ids.shape == (257,)
        if task == "infill":
            real = ids[ids > 0].tolist()
            assert real[0] == codec.ids["INFILL"] and real.count(codec.ids["MID"]) == 1
            k = next(t for t in real if codec.fill_base <= t < codec.pos_base) - codec.fill_base
            if codec.ids["EOM"] in real:
                middle = real[real.index(codec.ids["MID"]) + 1 : real.index(codec.ids["EOM"])]
                assert middle.count(codec.bar) == k
        if task == "accompany":
            assert c.files[f]["source"] == "pop909" and codec.ids["ACC"] in ids
    assert seen == {"continue", "infill", "accompany"}


def test_withheld_accompaniment_bars_keep_their_melody_and_lose_only_their_acc_section():
    codec = BarNoteCodec()
    S = codec.steps_per_bar
    bar = np.arange(12)  # 12 bars: a melody note on each downbeat, an accompaniment note half a beat later
    notes = Notes(np.concatenate([bar * 4.0, bar * 4.0 + 0.5]), np.full(24, 0.5), np.repeat([72, 48], 12),
                  np.full(24, 80), np.repeat([MELODY, ACCOMP], 12))  # fmt: skip
    ids = codec.encode(codec.quantize(notes), 0, 12, two_track=True)
    out = withhold_accompaniment(ids, codec, np.random.default_rng(0), p=0.5)
    bars = np.split(out, np.flatnonzero(out == codec.bar)[1:])
    has_acc = [codec.ids["ACC"] in b for b in bars]
    assert len(bars) == 12 and not has_acc[0] and any(has_acc)  # the lead-in is withheld, not everything
    ev = codec.events(out)
    assert (ev[ev[:, 4] == MELODY][:, 0] // S).tolist() == list(range(12))  # every bar keeps its melody
    assert (ev[ev[:, 4] == ACCOMP][:, 0] // S).tolist() == [b for b in range(12) if has_acc[b]]
    whole = np.split(ids, np.flatnonzero(ids == codec.bar)[1:])
    assert all(np.array_equal(b, w) for b, w, a in zip(bars, whole, has_acc) if a)  # the rest is untouched
    leads = set()
    for seed in range(40):  # p = 0: only the lead-in, 1 to 8 bars
        out = withhold_accompaniment(ids, codec, np.random.default_rng(seed), p=0.0)
        has_acc = [codec.ids["ACC"] in b for b in np.split(out, np.flatnonzero(out == codec.bar)[1:])]
        lead = has_acc.index(True)
        assert 1 <= lead <= 8 and all(has_acc[lead:])
        leads.add(lead)
    assert len(leads) > 4


def _tiny(corpus_dirs, run, steps, **kw):
    base = dict(run=str(run), out=str(run.parent / "out"), data=corpus_dirs, total_steps=steps, batch_size=4,
                warmup_steps=2, lr=3e-3, eval_every=steps, seed=3,
                model={"n_layer": 2, "n_head": 2, "n_embd": 64, "n_ff": 128, "dropout": 0.1},
                examples={"block_size": 128, "suffix_tokens": 32})  # fmt: skip
    return PretrainConfig(**{**base, **kw})


def test_resume_continues_the_same_run(corpus_dirs, tmp_path):
    train(_tiny(corpus_dirs, tmp_path / "a" / "run", 4), log=lambda *a: None)
    for _ in range(4):  # four processes of one step each (max_minutes=0 stops after a step)
        train(_tiny(corpus_dirs, tmp_path / "b" / "run", 4, max_minutes=0), log=lambda *a: None)
    a, b = (load_file(tmp_path / x / "run" / "checkpoint.safetensors") for x in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = ([json.loads(r) for r in (tmp_path / x / "run" / "curves.jsonl").read_text().splitlines()] for x in "ab")
    assert [r["step"] for r in cb] == [1, 2, 3, 4]
    assert [(r["loss"], r["lr"]) for r in ca] == [(r["loss"], r["lr"]) for r in cb]


def test_a_new_run_can_start_from_a_finished_runs_weights(corpus_dirs, tmp_path):
    from musiclab.training.export import export

    train(_tiny(corpus_dirs, tmp_path / "a" / "run", 3, stop_at=2), log=lambda *a: None)  # 2 steps of a 3-step schedule
    b = _tiny(corpus_dirs, tmp_path / "b" / "run", 1, init=str(tmp_path / "a" / "run"), lr=0.0, min_lr=0.0)
    train(b, log=lambda *a: None)  # one step at lr 0: the weights stay the ones it started from
    wa, wb = (load_file(tmp_path / x / "run" / "checkpoint.safetensors") for x in "ab")
    weights = [k for k in wa if k.startswith("model.")]
    assert weights and all(torch.equal(wa[k], wb[k]) for k in weights)
    card = export(tmp_path / "b" / "run", tmp_path / "out" / "flagship")
    ha, hb = (json.loads((tmp_path / x / "run" / "checkpoint.json").read_text())["spent_seconds"] for x in "ab")
    assert card["train_hours"] == round((ha + hb) / 3600, 2)  # both runs' hours
    assert [(r["run"], r["steps"], r["total_steps"], r.get("stop_at")) for r in card["runs"]] == [
        ("run", 2, 3, 2),
        ("run", 1, 1, None),
    ]
    assert card["steps"] == 3 and "2 steps (stopped at 2)" in (tmp_path / "out" / "flagship" / "README.md").read_text()
    bad = _tiny(corpus_dirs, tmp_path / "c" / "run", 1, init=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no checkpoint"):
        train(bad, log=lambda *a: None)


@pytest.fixture(scope="module")
def tiny_curves(flagship_weights) -> list[dict]:
    return [json.loads(r) for r in (flagship_weights.parent / "run" / "curves.jsonl").read_text().splitlines()]


def test_tiny_corpus_overfits_with_augmentation_on(tiny_curves):
    first, last = tiny_curves[0], tiny_curves[-1]
    assert last["ema"] < 0.5 * first["loss"], (first, last)
    assert last["valid"]["continue"] < 0.5 * first["loss"]


def test_continuation_starts_at_the_seed_end_and_fills_the_length(tiny_model):
    pm = song(7)
    takes = generate(tiny_model, pm, seed_seconds=6, seconds=8, variations=2, random_seed=5, top_p=0.95)
    for t in takes:
        new = t.midi.instruments[-1].notes
        assert new and min(n.start for n in new) >= 6 - 1e-6 and max(n.start for n in new) < 14
        assert t.midi.get_end_time() >= 14 - 1e-6
    alone = generate(tiny_model, pm, seed_seconds=6, seconds=8, variations=1, random_seed=6, top_p=0.95)[0]
    assert [(n.start, n.pitch) for n in alone.midi.instruments[-1].notes] == [
        (n.start, n.pitch) for n in takes[1].midi.instruments[-1].notes
    ]


def test_truncation_keeps_the_models_odds_of_another_note():
    # half the mass "move on" (one position id), half "another note" spread over 1,000 note ids:
    # top-k 10 over all ids would keep 9 notes (1% of the draws), drawn by kind it keeps half
    tok = BarNoteTokenizer()
    logits = torch.full((1, tok.vocab_size), -math.inf)
    logits[0, tok.pos_base + 12] = math.log(0.5)
    notes = tok.note_base + np.arange(0, 3000, 3)
    logits[0, notes] = torch.log(torch.linspace(0.5, 1.5, 1000) * 0.5 / 1000)
    rows = 600
    gens = [torch.Generator().manual_seed(i) for i in range(rows)]
    state = BarNoteState(tok, rows, 0, 480, first_bar=0)
    drawn = tok.sample(logits.repeat(rows, 1), Sampling(temperature=1.0, top_k=10), state, gens).numpy()
    is_note = tok.pitch_of[drawn] >= 0
    assert 0.43 < is_note.mean() < 0.57
    assert set(drawn[is_note]) <= set(notes[-10:].tolist())  # within the kind, top-k still cuts
    one_pass = sample_rows(logits.repeat(rows, 1), Sampling(temperature=1.0, top_k=10), gens).numpy()
    assert (tok.pitch_of[one_pass] >= 0).mean() < 0.05


def test_pace_counts_the_bars_with_music_and_pulls_a_take_back_to_it():
    tok = BarNoteTokenizer()
    S = tok.steps_per_bar
    # bar 1: a 3-note chord on each beat (12 notes, 4 onsets), its top note doubled on a second track
    q = np.array(
        [
            [S + b * 12, 60 + k, tok.note_base, t, 80]
            for b in range(4)
            for k in (0, 4, 7)
            for t in ((0, 1) if k == 7 else (0,))
        ]
    )
    pace = pace_of(tok, q, [(-5 * S, 2 * S)])  # no music before bar 1 or after it: not counted as silence
    assert (pace.notes, pace.onsets) == pytest.approx((12 / S, 4 / S))
    assert pace.palette[0] == pace.palette[4] == pace.palette[7] == pytest.approx(4.5 / 18)  # C E G, smoothed
    assert pace.palette[2] == pytest.approx(0.5 / 18)
    assert pace_of(tok, q, [(3 * S, 9 * S)]) is None
    state = BarNoteState(tok, 2, 0, 8 * S, first_bar=0, pace=pace)
    # take 0: one note at step 0 and one at step 40 (too sparse); take 1: a note on each of steps 0-6 (too dense)
    for pos0, pos1 in [(0, 0), (40, 1), (None, 2), (None, 3), (None, 4), (None, 5), (None, 6)]:
        state.done[0] = pos0 is None
        state.advance(np.array([tok.pos_base + (pos0 or 0), tok.pos_base + pos1]))
        state.advance(np.array([tok.note_base + 50 * (pos0 or 0), tok.note_base + 50 * pos1]))
    state.done[0] = False
    bias = state.keep_pace(np.zeros((2, tok.vocab_size)))
    later = bias[:, tok.pos_base + 47] - bias[:, tok.pos_base + 41]
    assert later[0] < 0 < later[1]  # the sparse take is hurried on, the dense one held back...
    assert bias[0, tok.bar] < 0 < bias[1, tok.bar]  # ...to the bar line too
    assert bias[0, tok.note_base] > 0  # one note an onset is thinner than the pace's 3: another note is likelier
    # an infill's span ends at step 24 of its only bar: a sparse take is held back from closing it
    span = BarNoteState(tok, 1, 0, 24, first_bar=0, fill_bars=0, end_step=24, pace=pace)
    span.advance(np.array([tok.pos_base + 20]))
    span.advance(np.array([tok.note_base]))
    bias = span.keep_pace(np.zeros((1, tok.vocab_size)))
    assert bias[0, tok.ids["EOM"]] == bias[0, tok.bar] < 0
    with pytest.raises(ValueError, match="onsets > 0"):
        Pace(0.1, 0.0)
    with pytest.raises(ValueError, match="summing to 1"):
        Pace(0.1, 0.1, (0.5,) * 12)


def test_the_palette_pulls_notes_towards_the_pitch_classes_the_take_has_left_out():
    tok = BarNoteTokenizer()
    S = tok.steps_per_bar
    q = np.array([[S + b * 12, 60 + k, tok.note_base, 0, 80] for b in range(4) for k in (0, 4, 7)])  # C E G
    pace = dataclasses.replace(pace_of(tok, q, [(S, 2 * S)]), durations=None)  # pitch classes alone
    state = BarNoteState(tok, 1, 0, 8 * S, first_bar=0, pace=pace)
    d = tok.note_base + (62 - 21) * tok.n_dur * tok.n_vel  # a D
    for pos in range(6):  # six Ds: a take wandering off the C major chord
        state.advance(np.array([tok.pos_base + pos]))
        state.advance(np.array([d]))
    bias = state.keep_palette(np.zeros((1, tok.vocab_size)))[0]
    c, e = d - 2 * tok.n_dur * tok.n_vel, d + 2 * tok.n_dur * tok.n_vel
    assert bias[c] == bias[e] > 0 > bias[d]
    f_sharp = d + 4 * tok.n_dur * tok.n_vel  # not in the pace at all: barely pushed for being unplayed
    assert 0 < bias[f_sharp] < 0.5 * bias[c]


def test_the_pace_pulls_notes_towards_its_durations():
    tok = BarNoteTokenizer()
    S, V = tok.steps_per_bar, tok.n_vel
    short = tok.note_base + (60 - 21) * tok.n_dur * V + 2 * V  # middle C lasting a triplet eighth (bin 2: 4 steps)
    q = np.array([[S + b * 12, 60, short, 0, 80] for b in range(4)])  # four of them, a beat apart
    pace = pace_of(tok, q, [(S, 2 * S)])
    assert pace.durations[2] == pytest.approx(4.5 / 9) and pace.durations[9] == pytest.approx(0.5 / 9)
    state = BarNoteState(tok, 1, 0, 8 * S, first_bar=0, pace=pace)
    for pos in range(6):  # six whole notes (bin 9: 48 steps): a take drifting from the seed's texture
        state.advance(np.array([tok.pos_base + pos]))
        state.advance(np.array([short + 7 * V]))
    bias = state.keep_palette(np.zeros((1, tok.vocab_size)))[0]
    assert bias[short] > 0 > bias[short + 7 * V]  # short notes likelier, long ones costlier...
    assert bias[short + 7 * V] == bias[short + 7 * V + 1]  # ...whatever their velocity
    d_sharp = short + 3 * tok.n_dur * V
    assert bias[short] - bias[short + 7 * V] == pytest.approx(bias[d_sharp] - bias[d_sharp + 7 * V])  # or pitch
    with pytest.raises(ValueError, match="duration-bin shares"):
        Pace(0.1, 0.1, durations=(0.5,) * 10)


def test_the_pace_takes_note_lengths_as_written_and_the_model_reads_them_as_heard():
    """A take writes its notes as the seed's are written (its pedal goes on apart), so those are
    the lengths it keeps to; the model reads the seed as it sounds, held by the pedal, also when
    the pedal is still down where the seed is cut."""
    tok = BarNoteTokenizer()
    dry, pedalled = (tok.prompt(seed_excerpt(song(1, pedal=p), 12.0), 12.0) for p in (False, True))
    assert pedalled.ids != dry.ids  # the accompaniment held to the cut
    assert pedalled.pace == dry.pace
    assert pedalled.pace.durations[7] > 0.4 > 0.01 > pedalled.pace.durations[9]  # half notes, none held to 48 steps


def _pedal(inst: pretty_midi.Instrument) -> list[tuple[float, float]]:
    """An instrument's sustain pedal as (down, up) seconds, read in file order (a press never
    lifted: up at inf)."""
    out, down = [], None
    for c in (c for c in inst.control_changes if c.number == 64):
        if c.value >= 64 and down is None:
            down = c.time
        elif c.value < 64 and down is not None:
            out.append((down, c.time))
            down = None
    return out + ([(down, math.inf)] if down is not None else [])


def _as_file(pm: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """``pm`` written to MIDI bytes and read back (events in the order a player meets them)."""
    buf = io.BytesIO()
    pm.write(buf)
    return load_midi(buf.getvalue())


BAR = 2.4  # song() is at 100 bpm in 4/4


def _pedalled_song(change: float) -> pretty_midi.PrettyMIDI:
    """song(3) with the PIANO track's pedal down from ``change`` s after each bar line to
    ``change`` s before the next (0: changed at the bar line itself)."""
    pm = song(3)
    pm.instruments[1].control_changes = [
        pretty_midi.ControlChange(64, v, b * BAR + dt)
        for b in range(16)
        for v, dt in ((127, change), (0, BAR - change))
    ]
    return pm


def test_a_continuation_goes_on_pedalling_as_its_seed_did(tiny_model):
    take = generate(tiny_model, _pedalled_song(0.1), seed_seconds=6.0, seconds=12.0, random_seed=4, top_p=0.95)[0]
    pm = _as_file(take.midi)
    seed_track, new = pm.instruments[1], pm.instruments[-1]
    assert np.allclose(_pedal(seed_track), [(0.1, 2.3), (2.5, 4.7), (4.9, 6.0)], atol=0.01)  # lifted at the seed's end
    # the seed's last two bars repeat from the seed's end (in its bar 2) to the take's (18 s)
    want = [(6.0, 7.1), (7.3, 9.5)] + [(b * BAR + 0.1, b * BAR + BAR - 0.1) for b in range(4, 7)] + [(16.9, 18.0)]
    got = _pedal(new)
    assert len(got) == len(want) and np.allclose(got, want, atol=0.02), got
    dry = generate(tiny_model, song(3), seed_seconds=6.0, seconds=12.0, random_seed=4, top_p=0.95)[0].midi
    assert not any(c.value >= 64 for i in dry.instruments for c in i.control_changes)


def test_a_pedal_changed_at_the_bar_line_is_changed_there_in_the_take_too(tiny_model):
    take = generate(tiny_model, _pedalled_song(0.0), seed_seconds=6.0, seconds=12.0, random_seed=4, top_p=0.95)[0]
    got = _pedal(_as_file(take.midi).instruments[-1])
    want = [(6.0, 7.2)] + [(b * BAR, b * BAR + BAR) for b in range(3, 7)] + [(16.8, 18.0)]
    assert len(got) == len(want) and np.allclose(got, want, atol=0.02), got  # not one long hold


def test_a_seed_shorter_than_a_bar_keeps_its_pedal(tiny_model):
    take = generate(tiny_model, _pedalled_song(0.1), seed_seconds=2.0, seconds=4.0, random_seed=4, top_p=0.95)[0]
    assert np.allclose(_pedal(_as_file(take.midi).instruments[1]), [(0.1, 2.0)], atol=0.01)


def test_an_infill_plays_under_the_files_pedal(tiny_model):
    take = infill(tiny_model, _pedalled_song(0.1), 4.8, 9.6, variations=1, random_seed=2, top_p=0.95)[0]
    new = _as_file(take.midi).instruments[-1]
    assert new.name == "musiclab infill" and new.notes
    assert np.allclose(_pedal(new), [(4.9, 7.1), (7.3, 9.5)], atol=0.01)


def test_a_pedal_pattern_loops_and_a_change_at_the_loop_point_stays_a_change():
    assert pace_mod.looped((96, ((0, 10), (50, 96))), 96, 100, 300) == [
        (100, 106), (146, 192), (192, 202), (242, 288), (288, 298)]  # fmt: skip
    assert pace_mod.looped((96, ((0, 60), (40, 96))), 0, 0, 96) == [(0, 96)]  # overlapping: one
    assert pace_mod.looped((96, ()), 96, 100, 300) == []


def _new_notes(tiny_model, scale: float = 1.0, **fields) -> list:
    """The new notes of 4 takes of song(3) (6 s seed, 12 s more), the seed's pace ``scale`` x as busy
    and with ``fields`` (Pace's) replaced."""
    with torch.inference_mode():  # as generate() runs
        run = prepare(tiny_model, song(3), Sampling(temperature=0.9, top_p=0.95), 6.0, 12.0, 4, 11, None)
        p = run.prompt.pace
        run.state.pace = dataclasses.replace(p, notes=p.notes * scale, onsets=p.onsets * scale, **fields)
        loop(run)
        return [n for t in finish(run) for n in t.midi.instruments[-1].notes]


def test_a_lower_pace_makes_a_sparser_take(tiny_model):
    own = _new_notes(tiny_model)
    half = _new_notes(tiny_model, scale=0.5)
    assert len(half) < 0.8 * len(own), (len(half), len(own))


def test_a_palette_of_one_pitch_class_brings_more_of_it(tiny_model):
    share = {}
    for name, pace in (("own", {}), ("c sharp", {"palette": (0.01, 0.89) + (0.01,) * 10})):
        new = [n.pitch % 12 for n in _new_notes(tiny_model, **pace)]
        share[name] = new.count(1) / len(new)
    assert share["c sharp"] > share["own"] + 0.1, share


def test_a_pace_of_long_notes_brings_longer_notes(tiny_model):
    beats = {}
    for name, pace in (("own", {}), ("long", {"durations": (0.01,) * 9 + (0.91,)})):
        new = _new_notes(tiny_model, **pace)
        beats[name] = np.median([n.end - n.start for n in new]) * 100 / 60  # the song is at 100 bpm
    assert beats["long"] > 1.5 * beats["own"], beats


def test_infill_keeps_everything_outside_the_span(tiny_model):
    pm = song(8, bars=24)
    takes = infill(tiny_model, pm, 9.6, 19.2, variations=2, random_seed=2, top_p=0.95)
    before = sorted(
        (n.start, n.end, n.pitch, n.velocity) for i in pm.instruments for n in i.notes if not 9.6 <= n.start < 19.2
    )
    for t in takes:
        kept = sorted((n.start, n.end, n.pitch, n.velocity) for i in t.midi.instruments[:-1] for n in i.notes)
        assert kept == before  # bit for bit
        new = t.midi.instruments[-1]
        assert new.name == "musiclab infill" and new.notes
        assert all(9.6 <= n.start < 19.2 for n in new.notes)
        assert not t.info["stopped_early"]


def test_accompany_keeps_the_melody(tiny_model):
    pm = song(9, bars=12)
    pm.instruments = pm.instruments[:1]  # melody only
    takes = accompany(tiny_model, pm, 0, variations=2, random_seed=4)
    for t in takes:
        assert [(n.start, n.end, n.pitch, n.velocity) for n in t.midi.instruments[0].notes] == [
            (n.start, n.end, n.pitch, n.velocity) for n in pm.instruments[0].notes
        ]
        acc = t.midi.instruments[-1]
        assert acc.name == "musiclab accompaniment" and len(acc.notes) > 8
        assert all(0 <= n.start < pm.get_end_time() for n in acc.notes)


def _line(onsets_beats, durations_beats, pitches) -> np.ndarray:
    n = len(pitches)
    notes = Notes(np.asarray(onsets_beats, float), np.asarray(durations_beats, float), np.asarray(pitches),
                  np.full(n, 80), np.zeros(n, dtype=np.int64))  # fmt: skip
    return BarNoteTokenizer().quantize(notes)


def test_one_line_tells_a_tune_from_chords_and_voices():
    codec, tune = BarNoteTokenizer(), [60, 62, 64, 65, 67, 65, 64, 62, 60, 72]
    assert pace_mod.one_line(codec, _line(range(10), [1.0] * 10, tune)) == (60, 72)
    assert pace_mod.one_line(codec, _line(range(10), [1.2] * 10, tune)) == (60, 72)  # legato within a 16th
    assert pace_mod.one_line(codec, _line(range(10), [2.0] * 10, tune)) is None  # two voices overlap
    assert pace_mod.one_line(codec, _line([0, 0, *range(1, 9)], [1.0] * 10, tune)) is None  # a chord
    assert pace_mod.one_line(codec, _line(range(5), [1.0] * 5, tune[:5])) is None  # too few to tell


def test_a_tune_alone_goes_on_as_one_line_in_its_register(tiny_model):
    """The tiny model learnt piano: left alone it would answer a tune with chords and a bass."""
    pm = load_midi(list_examples()["Foster — Jeanie (melody)"])
    prompt = tiny_model.codec.prompt(seed_excerpt(pm, 10.0, None), 10.0)
    lo, hi = prompt.line
    for take in generate(tiny_model, pm, seed_seconds=10.0, seconds=12.0, variations=2, random_seed=3):
        new = sorted((n.start, n.end, n.pitch) for n in take.midi.instruments[-1].notes)
        assert len(new) > 4
        assert all(a[1] <= b[0] + 1e-6 and a[0] < b[0] for a, b in zip(new, new[1:]))  # one note at a time
        assert all(lo - pace_mod.LINE_RANGE <= p <= hi + pace_mod.LINE_RANGE for _, _, p in new)
    chords = tiny_model.codec.prompt(seed_excerpt(song(2), 10.0, None), 10.0)
    assert chords.line is None
    lo, hi = min(n.pitch for n in pm.instruments[0].notes), max(n.pitch for n in pm.instruments[0].notes)
    for take in infill(tiny_model, pm, 12.0, 20.0, variations=2, random_seed=3):  # its middle: the whole tune's range
        new = sorted((n.start, n.pitch) for n in take.midi.instruments[-1].notes)
        assert new and all(a[0] < b[0] for a, b in zip(new, new[1:]))
        assert all(lo - pace_mod.LINE_RANGE <= p <= hi + pace_mod.LINE_RANGE for _, p in new)


def test_a_long_melody_is_accompanied_to_its_end(tiny_model):
    """A 6-minute melody of sixteenth notes is 6,700 forced ids, past the 4,096 any job once stopped at."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0, name="MELODY")
    inst.notes = [pretty_midi.Note(80, 60 + k % 7, k * 0.125, (k + 1) * 0.125) for k in range(16 * 180)]
    pm.instruments.append(inst)
    (take,) = accompany(tiny_model, pm, 0, random_seed=1)
    assert not take.info["stopped_early"] and take.info["tokens"] > 6000
    assert max(n.start for n in take.midi.instruments[-1].notes) > 350


def test_a_span_too_long_to_accompany_at_once_is_refused_with_the_limit(tiny_model):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0, name="MELODY")
    inst.notes = [pretty_midi.Note(80, 60 + k % 7, k * 1.0, k + 0.9) for k in range(700)]  # 700 s
    pm.instruments.append(inst)
    with pytest.raises(SettingsError, match="the span is 700 s long; at most 600 s can be accompanied at once"):
        accompany(tiny_model, pm, 0)
    (take,) = accompany(tiny_model, pm, 0, start=100.0, end=130.0, random_seed=0)  # a span within it is fine
    assert take.info["span"] == [100.0, 130.0]


def test_the_accompaniment_is_kept_under_the_melody_note_sounding():
    tok = BarNoteTokenizer()
    S = tok.steps_per_bar
    # in beats: a C7 over in bar 0, then C5 for 6 beats from bar 2 (longer than any length bin), G4 over it
    melody = Notes(np.array([0.0, 8.0, 9.5]), np.array([4.0, 6.0, 1.0]), np.array([96, 72, 67]),
                   np.array([90] * 3), np.array([MELODY] * 3))  # fmt: skip
    top = melody_top(melody, 12, 2 * S, 4 * S)  # bars 2-3 only
    assert top.tolist() == [72] * 72 + [-1] * 24  # the G4 under the C5 changes nothing; C7 ended before
    state = BarNoteState(tok, 3, 2 * S, 4 * S, first_bar=2)
    state.melody_top = (2 * S, top)
    state.bar[:] = [2, 3, 3]
    state.pos[:] = [3, 20, 30]  # under the C5, under its held end (beat 6), where the melody rests
    out = state.keep_under(np.zeros((3, tok.vocab_size)))
    pitch = tok.pitch_of
    for b, ceiling in enumerate((72, 72, 128)):
        assert (out[b][pitch > ceiling] == -UNDER_PULL).all() and (out[b][pitch <= ceiling] == 0).all()


def test_a_low_melody_keeps_the_accompaniment_lower(tiny_model, monkeypatch):
    pm = song(9, bars=8)
    pm.instruments = pm.instruments[:1]
    for n in pm.instruments[0].notes:
        n.pitch -= 24  # the melody two octaves down, among the chords the model learned to play
    above = {}
    for pull in (0.0, 3.0):
        monkeypatch.setattr(barnote_state, "UNDER_PULL", pull)
        takes = accompany(tiny_model, pm, 0, variations=2, random_seed=5, top_p=0.95)
        mel = pm.instruments[0].notes
        tops = [max([m.pitch for m in mel if m.start <= n.start < m.end], default=None)
                for t in takes for n in t.midi.instruments[-1].notes]  # fmt: skip
        pitches = [n.pitch for t in takes for n in t.midi.instruments[-1].notes]
        above[pull] = np.mean([p > top for p, top in zip(pitches, tops) if top is not None])
    assert above[3.0] < above[0.0] - 0.2, above


def test_accompany_can_replace_the_other_tracks_in_its_span(tiny_model):
    pm = song(9, bars=12)  # MELODY and PIANO
    span = (4.8, 14.4)
    kept, replaced = (accompany(tiny_model, pm, 0, start=span[0], end=span[1], random_seed=4, replace_others=r)[0].midi
                      for r in (False, True))  # fmt: skip
    rows = lambda inst: [(n.start, n.end, n.pitch, n.velocity) for n in inst.notes]  # noqa: E731
    for out in (kept, replaced):
        assert rows(out.instruments[0]) == rows(pm.instruments[0])  # the melody, exactly
    assert rows(kept.instruments[1]) == rows(pm.instruments[1])
    outside = [(a, min(z, span[0]) if a < span[0] else z, p, v)  # sounding into the span: stops at its start
               for a, z, p, v in rows(pm.instruments[1]) if not span[0] <= a < span[1]]  # fmt: skip
    assert rows(replaced.instruments[1]) == outside and len(outside) < len(pm.instruments[1].notes)
    assert replaced.instruments[-1].name == "musiclab accompaniment" and replaced.instruments[-1].notes


@pytest.mark.parametrize(
    "start,end,msg",
    [(30.0, 40.0, "past the end"), (5.0, 5.0, "is empty"), (8.0, 4.0, "after its end"), (5.0, 99.0, "past the end")],
)
def test_bad_spans_say_what_is_wrong(tiny_model, start, end, msg):
    with pytest.raises(SettingsError, match=msg):
        infill(tiny_model, song(1, bars=8), start, end)


def test_a_model_without_infill_says_which_can():
    from musiclab.serving.weights import load_model

    lstm = load_model("lstm", device="cpu")
    with pytest.raises(CannotError, match="cannot infill; models that can: .*flagship"):
        infill(lstm, song(1), 2.0, 4.0)
    with pytest.raises(CannotError, match="cannot accompany; models that can: .*flagship"):
        accompany(lstm, song(1), 0)


def test_shipped_weights_load_strictly_and_greedy_decode_the_cards_ids(flagship_weights):
    from musiclab.serving.weights import load_model
    from musiclab.training.export import greedy_ids

    roots = [flagship_weights] + ([ROOT / "weights"] if (ROOT / "weights" / "flagship").is_dir() else [])
    for root in roots:
        model = load_model("flagship", root=root, device="cpu")
        check = model.card["greedy_check"]
        assert len(check["ids"]) == 64 and greedy_ids(model.net, model.codec) == check["ids"], root


def test_infill_ends_where_the_model_writes_past_the_span_instead_of_cramming_its_last_step():
    from musiclab.codecs.barnote_state import BarNoteState, BarNoteTokenizer

    codec = BarNoteTokenizer()
    S, note = codec.steps_per_bar, codec.note_base  # the lowest NOTE id
    start, end = 2 * S + 10, 3 * S + 5  # the span crosses one bar line, ends 5 steps into bar 3
    state = BarNoteState(codec, 2, start, end, first_bar=2, fill_bars=1, end_step=end)
    assert not state.mask()[:, codec.ids["EOM"]].any()  # a bar line is still to come
    state.advance(np.array([codec.bar, codec.bar]))  # into the span's last bar
    state.advance(np.array([codec.pos_base + 4, codec.pos_base + 7]))  # inside / past the span's end
    assert list(state.done) == [False, True]
    state.advance(np.array([note, note]))
    ev = state.events(0)
    assert ev[:, 0].tolist() == [3 * S + 4] and state.ids[1] == [codec.bar]  # the late position was not kept
    state.advance(np.array([codec.bar, codec.bar]))  # a bar line in the last bar also ends it
    assert state.done.all()


class _Oracle(torch.nn.Module):
    """A "model" whose every probability is on the id that really follows (teacher-forced: 1.0)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.w = vocab, torch.nn.Parameter(torch.zeros(1))

    def get_block_size(self) -> int:
        return 1024

    def forward(self, x):
        logits = torch.full((*x.shape, self.vocab), -1e9)
        logits[0, :-1].scatter_(1, x[0, 1:, None], 0.0)
        return logits, None


def test_chord_tone_mass_lines_the_accompaniment_up_with_its_chords():
    from types import SimpleNamespace

    from conftest import CHORDS

    from musiclab.evaluation.editbench import Song, chord_tone_mass

    beat, model = 0.6, SimpleNamespace(codec=BarNoteCodec(), net=_Oracle(BarNoteCodec().vocab_size))

    def bar_late(bars_late: int, chords_late: int = 0) -> Song:  # song(): its PIANO plays each bar's chord
        pm = song(bars=8)
        for inst in pm.instruments:
            for n in inst.notes:
                n.start, n.end = n.start + 4 * beat * bars_late, n.end + 4 * beat * bars_late
        chords = [(4 * beat * (b + bars_late + chords_late), 4 * beat * (b + bars_late + chords_late + 1),
                   frozenset(p % 12 for p in CHORDS[b % 4])) for b in range(8)]  # fmt: skip
        return Song("x", pm, 0, 1, 4 * beat * bars_late, chords, np.arange(0.0, 30.0, beat))

    right, late = bar_late(1), bar_late(1, chords_late=1)
    assert chord_tone_mass(model, right, right) == 1.0  # every real PIANO note is a chord tone of its bar
    assert chord_tone_mass(model, right, bar_late(0)) == 1.0  # another song's melody, moved to this one's first bar
    assert chord_tone_mass(model, right, None) == 1.0
    # chords a bar late: a position's first (lowest) note is its bar's root, in none of the bar before's chords
    assert chord_tone_mass(model, late, late) == 0.0
    none = Song("x", right.pm, 0, 1, right.start, [(a, b, None) for a, b, _ in right.chords], right.beats)
    assert chord_tone_mass(model, none, none) is None  # "N" chords are not counted


@pytest.mark.integration
def test_train_flagship_ships_a_finished_run_to_out_and_not_an_unfinished_one(corpus_dirs, tmp_path):
    import subprocess
    import sys

    from musiclab.serving.weights import load_model

    cfg = {"total_steps": 2, "batch_size": 2, "warmup_steps": 1, "eval_every": 2,
           "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_ff": 64},
           "examples": {"block_size": 64, "suffix_tokens": 16}}  # fmt: skip
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    out = tmp_path / "weights" / "flagship"
    args = [sys.executable, "-m", "musiclab", "train-flagship", "--data", *(f"{k}={v}" for k, v in corpus_dirs.items()),
            "--run", str(tmp_path / "run"), "--out", str(out), "--config", str(tmp_path / "tiny.json")]  # fmt: skip
    first = subprocess.run([*args, "--max-minutes", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert not out.exists()  # stopped after one step of two: nothing shipped
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"shipped {out}" in done.stdout and "2 steps" in done.stdout
    model = load_model("flagship", root=out.parent, device="cpu")
    assert model.card["steps"] == 2 and model.net.config.n_layer == 1


def test_a_run_can_start_from_a_shipped_model_with_its_key_value_heads_pooled(flagship_weights, tmp_path):
    """--init may name a shipped model's folder: its fp16 weights start a grouped-query model (one
    key/value head: each the mean of the two), which then reads a prompt as the full-head model
    roughly does, and the new card lists the shipped model's runs before its own."""
    import json

    from musiclab.models import build_model
    from musiclab.training.export import run_chain
    from musiclab.training.pretrain import warm_start

    folder = flagship_weights / "flagship"
    card = json.loads((folder / "config.json").read_text())
    full = build_model("flagship", card["model"]).eval()
    warm_start(full, folder)
    pooled = build_model("flagship", {**card["model"], "n_kv_head": 1}).eval()
    warm_start(pooled, folder)
    assert pooled.blocks[0].c_attn.weight.shape[0] == full.blocks[0].c_attn.weight.shape[0] - 2 * 32
    x = torch.randint(30, 2000, (1, 64))
    with torch.no_grad():
        a, b = torch.log_softmax(full(x)[0], -1), torch.log_softmax(pooled(x)[0], -1)
    assert 0 < (a.exp() * (a - b)).sum(-1).mean() < 1.0  # changed, but still the same model's odds
    run = tmp_path / "run"
    run.mkdir()
    meta = {"step": 5, "spent_seconds": 36.0, "config": {"init": str(folder), "total_steps": 5}}
    (run / "checkpoint.json").write_text(json.dumps(meta))
    assert run_chain(run) == card["runs"] + [{"run": "run", "steps": 5, "hours": 0.01, "total_steps": 5}]
