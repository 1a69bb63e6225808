"""The infill and accompaniment benchmarks: their measures on hand-made cases, and the bench
commands end to end on a small corpus laid out like the real ones (with a small trained flagship)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
from conftest import ROOT, make_song_corpus, song

from musiclab.evaluation.editbench import ACCOMPANY_S, Song, accompaniment_stats, repeat_before
from musiclab.midi.pop909 import read_chords


def _song_with(chords: list, beat: float = 0.6, melody: list | None = None) -> Song:
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0, name="MELODY"))
    pm.instruments[0].notes = melody if melody is not None else [pretty_midi.Note(90, 72, 0.0, ACCOMPANY_S)]
    return Song("pop909/x", pm, 0, 1, 0.0, chords, np.arange(0, ACCOMPANY_S + 1, beat))


def test_chord_labels_become_pitch_classes_with_their_bass(tmp_path):
    f = tmp_path / "chord_midi.txt"
    f.write_text("0.0\t1.0\tC:maj\n1.0\t2.0\tA:min/b3\n2.0\t3.0\tN\n3.0\t4.0\tG:7\n")
    chords = read_chords(f, lambda t: t + 0.5)
    assert [(a, b) for a, b, _ in chords] == [(0.5, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, 4.5)]
    assert chords[0][2] == {0, 4, 7} and chords[1][2] == {9, 0, 4} and chords[2][2] is None
    assert chords[3][2] == {7, 11, 2, 5}


def test_chord_tones_on_the_grid_score_one_and_a_semitone_off_scores_zero():
    sg = _song_with([(0.0, ACCOMPANY_S, frozenset({0, 4, 7}))])
    on = [pretty_midi.Note(80, p, 0.3 * k, 0.3 * k + 0.2) for k, p in enumerate([48, 52, 55, 60] * 5)]  # eighths
    want = {"chord_tone": 1.0, "on_beat": 0.5, "on_eighth": 1.0, "notes_per_s": 20 / ACCOMPANY_S, "above_melody": 0.0}
    assert accompaniment_stats(on, sg) == want
    off = [pretty_midi.Note(80, n.pitch + 1, n.start + 0.1, n.end + 0.1) for n in on]  # a sixth of a beat late
    s = accompaniment_stats(off, sg)
    assert s["chord_tone"] == 0.0 and s["on_beat"] == 0.0 and s["on_eighth"] == 0.0


def test_above_the_melody_counts_notes_struck_while_it_sounds():
    melody = [pretty_midi.Note(90, 67, 0.0, 1.0), pretty_midi.Note(90, 60, 2.0, 3.0)]  # G4, a rest, C4
    sg = _song_with([(0.0, ACCOMPANY_S, frozenset({0, 4, 7}))], melody=melody)
    notes = [pretty_midi.Note(80, p, t, t + 0.2) for p, t in [(72, 0.5), (64, 0.7), (79, 1.5), (64, 2.5)]]
    assert accompaniment_stats(notes, sg)["above_melody"] == pytest.approx(2 / 3)  # the note in the rest is not counted


def test_no_chord_is_skipped_and_nothing_played_is_none_not_zero():
    sg = _song_with([(0.0, 1.0, None), (1.0, ACCOMPANY_S, frozenset({0, 4, 7}))])
    notes = [pretty_midi.Note(80, 61, 0.3, 0.5), pretty_midi.Note(80, 64, 1.2, 1.5)]
    assert accompaniment_stats(notes, sg)["chord_tone"] == 1.0  # the C# under "N" does not count
    empty = {"chord_tone": None, "on_beat": None, "on_eighth": None, "notes_per_s": 0.0, "above_melody": None}
    assert accompaniment_stats([], sg) == empty


def test_aligning_a_song_moves_notes_tempo_map_and_annotations_by_the_same_ticks(tmp_path):
    from musiclab.midi.pop909 import aligned

    pm = pretty_midi.PrettyMIDI(initial_tempo=100)  # 0.6 s a beat, then 120 bpm from beat 8
    pm._tick_scales = [(0, 60 / (100 * pm.resolution)), (8 * pm.resolution, 60 / (120 * pm.resolution))]
    pm._update_tick_to_time(64 * pm.resolution)
    inst = pretty_midi.Instrument(0)
    beats = [1.5, 2.5, 9.5, 12.0]  # a pickup of 1.5 beats, then notes on and off beats, past the change
    inst.notes = [
        pretty_midi.Note(
            80, 60, pm.tick_to_time(int(b * pm.resolution)), pm.tick_to_time(int((b + 0.5) * pm.resolution))
        )
        for b in beats
    ]
    pm.instruments.append(inst)
    (tmp_path / "beat_midi.txt").write_text("0.9 1.0 1.0\n1.5 1.0 0.0\n")  # the first downbeat on beat 1.5
    out, move = aligned(pm, tmp_path / "x.mid")
    got = [out.time_to_tick(n.start) / out.resolution for n in out.instruments[0].notes]
    assert got == pytest.approx([b + 2.5 for b in beats], abs=1e-3)  # 2.5 beats later: the downbeat on beat 4
    assert move(0.9) == pytest.approx(out.tick_to_time(4 * out.resolution))
    assert out.get_tempo_changes()[0][1] == pytest.approx(out.tick_to_time(int(10.5 * out.resolution)))


def test_repeat_before_moves_the_bars_before_the_span_into_it_bar_for_bar():
    from musiclab.codecs.barnote import BarNoteCodec
    from musiclab.evaluation.editbench import Span

    pm = song(1)  # 100 bpm: a bar is 2.4 s; then the tempo doubles from bar 6 (14.4 s), mid-span
    res = pm.resolution
    pm._tick_scales = [(0, 0.6 / res), (24 * res, 0.3 / res)]
    pm._update_tick_to_time(80 * res)
    out = repeat_before(Span("piano", "piano/x", pm, 9.6, 9.6 + 2 * 2.4 + 2 * 1.2, 4), BarNoteCodec())
    beats = lambda m, a, b: sorted((round(m.time_to_tick(n.start) / res, 3), n.pitch)  # noqa: E731
                                   for i in m.instruments for n in i.notes if a <= m.time_to_tick(n.start) / res < b)  # fmt: skip
    before = [(b + 16, p) for b, p in beats(pm, 0, 16)]  # bars 0-3, in beats
    assert beats(out, 16, 32) == before and before  # land on bars 4-7, beat for beat, across the tempo change
    assert beats(out, 0, 16) == beats(pm, 0, 16) and beats(out, 32, 99) == beats(pm, 32, 99)  # the rest unchanged


@pytest.fixture(scope="module")
def bench_env(flagship_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("edit-data")
    data = make_song_corpus(root)
    env = {**os.environ, "MUSICLAB_WEIGHTS": str(flagship_weights), "MUSICLAB_CACHE": str(root / "cache")}
    return env, [f"{k}={v}" for k, v in data.items()]


def _bench(env, *args):
    r = subprocess.run([sys.executable, "-m", "musiclab", "bench", *args], cwd=ROOT, env=env[0], capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    return r


def test_bench_infill_measures_infill_against_both_baselines(bench_env):
    r = _bench(
        bench_env,
        "infill",
        "--data",
        *bench_env[1],
        "--pieces",
        "1",
        "--takes",
        "1",
        "--repeats",
        "1",
        "--bars",
        "1",
        "--json",
    )  # fmt: skip (1 bar: 4 do not fit the small model's 128-token context)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    systems = {row["system"] for row in out["summary"]}
    assert systems == {"real", "repeat before", "continue only", "flagship infill"}
    real = [x for x in out["summary"] if x["system"] == "real" and x["source"] == "all"][0]
    assert real["pc_tv"] == 0 and real["density"] == 0
    fill = [x for x in out["rows"] if x["system"] == "flagship infill"]
    assert fill and all(x["bits_both"] > 0 and x["bits_prefix"] > 0 for x in fill)
    assert out["infill_8_bars_s"] is None or out["infill_8_bars_s"] > 0  # None: no piece has 8 bars after a span
    assert set(out["targets"]) >= {"density below continue-only", "<= 2 s"}
    rows = {x["system"]: x for x in out["summary"] if x["source"] == "all"}
    assert rows["repeat before"]["pc_tv"] > 0 and rows["continue only"]["density"] != 0  # baselines are not the real


def test_bench_accompany_puts_the_real_piano_on_its_chords(bench_env):
    r = _bench(bench_env, "accompany", "--data", *bench_env[1], "--pieces", "3", "--takes", "1", "--repeats", "1",
               "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    by = {x["system"]: x for x in out["summary"] if x["source"] == "all"}
    assert set(by) == {"real PIANO", "another song's PIANO", "the MELODY itself", "flagship accompany",
                       "flagship accompany, given chords"}  # fmt: skip
    real = by["real PIANO"]  # song() plays its chords on beats 1 and 3: the annotations moved with the notes
    assert real["chord_tone"] == 1.0 and real["on_beat"] == 1.0
    assert by["the MELODY itself"]["chord_tone"] == 1.0  # song()'s melody plays only chord tones
    assert by["flagship accompany"]["notes_per_s"] > 0 and out["accompany_30_s"] > 0
    given = by["flagship accompany, given chords"]["chord_tone"]
    assert given > 0.8, by  # the fake songs all share one progression, so another song's PIANO fits too
    assert {f"chord-tone share within 0.1 of the real PIANO's, {how}" for how in
            ("the melody alone", "given the chords")} <= set(out["targets"])  # fmt: skip
    assert set(out["chord_tone_mass"]) == {"own melody", "another song's melody", "no melody"}
    assert all(0.0 < m < 1.0 for m in out["chord_tone_mass"].values())


def test_bench_quality_prints_the_table_and_writes_it_into_the_card_once(bench_env, flagship_weights):
    args = ("quality", "--data", *bench_env[1], "--models", "flagship", "--pieces", "1", "--takes", "1",
            "--seconds", "10", "--cards")  # fmt: skip
    for _ in range(2):  # the second run replaces the first one's section
        r = _bench(bench_env, *args)
        assert r.returncode == 0, r.stderr
    assert "| all | seed loop |" in r.stdout and "| all | flagship |" in r.stdout and "| all | real |" in r.stdout
    card = json.loads((flagship_weights / "flagship" / "config.json").read_text())
    assert {x["system"] for x in card["quality"]["rows"]} >= {"flagship", "real", "seed loop"}
    readme = (flagship_weights / "flagship" / "README.md").read_text()
    assert readme.count("## Quality benchmark") == 1 and "| all | flagship |" in readme


def test_bench_infill_with_a_model_that_cannot_says_which_can(bench_env):
    r = _bench(bench_env, "infill", "--model", "lstm", "--data", *bench_env[1])
    assert r.returncode == 2 and "cannot infill" in r.stderr and "flagship" in r.stderr


def test_targets_say_met_not_met_and_not_measured():
    from musiclab.evaluation.editbench import verdict

    summary = [
        {
            "source": "all",
            "system": "flagship infill",
            "density": 0.4,
            "pc_tv": 0.39,
            "bits_both": 7.3,
            "bits_prefix": 7.4,
        },
        {
            "source": "all",
            "system": "continue only",
            "density": 0.5,
            "pc_tv": 0.38,
            "bits_both": None,
            "bits_prefix": None,
        },
    ]
    got = {k: met for k, (_, met) in verdict(summary, "flagship", "infill", None).items()}
    assert got == {
        "density below continue-only": True,
        "pitch-class TV below continue-only": False,
        "bits given both sides below given the prefix": True,
        "<= 2 s": None,  # --repeats 0: speed was not measured, which is neither met nor missed
    }
    assert verdict(summary, "flagship", "infill", 2.5)["<= 2 s"] == (2.5, False)
