"""Metrics on hand-built MIDI with known answers, and the `evaluate` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
from conftest import ROOT, make_midi

from musiclab.evaluation.evaluate import (
    DISTANCES,
    LABELS,
    distance_figure,
    evaluate_file,
    metric_figure,
    results_frame,
    summary_frame,
    take_row,
)
from musiclab.evaluation.metrics import (
    circular_wasserstein,
    compare,
    corpus_stats,
    pitch_class_histogram,
    segment_stats,
    total_variation,
)
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def seq(pitches, step=0.5, start=0.0, dur=None):
    """[(pitch, start, end)] one after another, ``step`` seconds apart."""
    return [(p, start + i * step, start + i * step + (dur or step)) for i, p in enumerate(pitches)]


def test_c_major_scale_is_all_in_c_major():
    s = segment_stats(make_midi(seq(C_MAJOR * 2)))
    assert s["key"] == "C major"
    assert s["in_key"] == 1.0
    assert s["pitch_range"] == 12 and (s["pitch_low"], s["pitch_high"]) == (60, 72)
    assert s["repetition"] == 0.0
    assert s["polyphony"] == 1.0


def test_chromatic_notes_are_off_key():
    # C major seed key, then the five black keys: 0% in key
    s = segment_stats(make_midi(seq([61, 63, 66, 68, 70])), key=(0, "major"))
    assert s["in_key"] == 0.0


def test_single_repeated_note():
    s = segment_stats(make_midi(seq([60] * 16)))
    assert s["repetition"] == 1.0
    assert s["pitch_range"] == 0
    assert s["pc_hist"] == [1.0] + [0.0] * 11


def test_density_ioi_at_120_bpm():
    # 16 eighth notes at 120 bpm over 4 s: 4 notes/s, every IOI half a beat
    s = segment_stats(make_midi(seq(C_MAJOR * 2, step=0.25)), start=0.0, end=4.0)
    assert s["density"] == pytest.approx(4.0)
    assert s["ioi_mean"] == pytest.approx(0.5)
    assert s["ioi_hist"] == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_polyphony_chord_and_overlap():
    chord = make_midi([(60, 0, 2), (64, 0, 2), (67, 0, 2)])
    assert segment_stats(chord)["polyphony"] == pytest.approx(3.0)
    # 2 s sounding, 1 s of it with two notes: (1*1 + 2*1) / 2 = 1.5
    assert segment_stats(make_midi([(60, 0, 2), (64, 1, 2)]))["polyphony"] == pytest.approx(1.5)
    # a chord repeated is a repetition; chords spread by < 30 ms are one onset
    rolled = make_midi([(60, 0, 0.5), (64, 0.01, 0.5), (60, 1, 1.5), (64, 1.02, 1.5)])
    assert segment_stats(rolled)["repetition"] == 1.0


def test_empty_bars_from_time_signature():
    # 4/4 at 120 bpm = 2 s bars; notes in bars 1 and 3 of 4 -> half the bars empty
    pm = make_midi([(60, 0, 1), (62, 4, 5)])
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
    assert segment_stats(pm, 0.0, 8.0)["empty_bars"] == 0.5
    # 2/4: 1 s bars -> 8 bars, 2 with an onset
    pm.time_signature_changes = [pretty_midi.TimeSignature(2, 4, 0.0)]
    assert segment_stats(pm, 0.0, 8.0)["empty_bars"] == 0.75


def test_drums_are_ignored_and_empty_segment_is_undefined():
    pm = make_midi(seq(C_MAJOR))
    drums = pretty_midi.Instrument(0, is_drum=True)
    drums.notes = [pretty_midi.Note(100, 36, t, t + 0.1) for t in np.arange(0, 4, 0.25)]
    pm.instruments.append(drums)
    assert segment_stats(pm)["notes"] == 8
    empty = segment_stats(pm, 10.0, 12.0)
    assert empty["notes"] == 0 and empty["density"] == 0.0
    assert empty["in_key"] is None and empty["repetition"] is None and empty["pitch_range"] is None


def test_pitch_class_distances():
    c, b, fs = (pitch_class_histogram([p]) for p in (60, 71, 66))
    assert circular_wasserstein(c, c) == 0.0
    assert circular_wasserstein(c, b) == pytest.approx(1.0)  # C and B are neighbours on the circle
    assert circular_wasserstein(c, fs) == pytest.approx(6.0)  # the tritone is the farthest
    c_maj = pitch_class_histogram([0, 2, 4, 5, 7, 9, 11])
    g_maj = pitch_class_histogram([0, 2, 4, 6, 7, 9, 11])
    assert circular_wasserstein(c_maj, g_maj) == pytest.approx(1 / 7)
    assert total_variation(c_maj, g_maj) == pytest.approx(1 / 7)
    assert total_variation(c, b) == 1.0
    assert np.isnan(circular_wasserstein(c, np.zeros(12)))
    with pytest.raises(ValueError, match="expected two"):
        circular_wasserstein(c, np.ones(7))


def test_compare_continuation_vs_seed():
    # seed: C major scale for 4 s; continuation: F# repeated for 4 s
    take = make_midi(seq(C_MAJOR) + seq([66] * 8, start=4.0))
    c = compare(take, 4.0, seconds=4.0)
    assert c["key"] == "C major"
    assert c["seed"]["in_key"] == 1.0 and c["continuation"]["in_key"] == 0.0
    assert c["continuation"]["repetition"] == 1.0 and c["seed"]["repetition"] == 0.0
    assert c["continuation"]["notes"] == 8 and c["seed"]["notes"] == 8
    assert c["distance"]["pc_tv"] == 1.0
    assert c["distance"]["pc_wasserstein"] > 1.0
    assert c["distance"]["ioi_tv"] == 0.0  # same rhythm
    with pytest.raises(ValueError, match="seed_end"):
        compare(take, 0.0)


def test_corpus_and_file_comparisons_on_examples():
    pms = [load_midi(p) for p in list_examples().values()]
    ref = corpus_stats(pms)
    assert ref["files"] == len(pms) and sum(ref["pc_hist"]) == pytest.approx(1.0)
    r = evaluate_file(pms[0], corpus=pms)
    assert 0 < r["distance"]["pc_tv"] < 1
    assert evaluate_file(pms[0], against=pms[0])["distance"]["pc_wasserstein"] == 0.0
    with pytest.raises(ValueError, match="at most one"):
        evaluate_file(pms[0], against=pms[1], seed_end=2.0)


def test_tables_and_figures_from_takes():
    rows = []
    for model, cont in (("steady", [66] * 8), ("scale", C_MAJOR)):
        for t in (1, 2):
            row = {"model": model, "seed": "c-major", "take": t}
            row.update(take_row(make_midi(seq(C_MAJOR) + seq(cont, start=4.0)), 4.0, 4.0))
            rows.append(row)
    df = results_frame(rows)
    summary = summary_frame(df)
    assert summary.loc["steady", "repetition"] == 1.0 and summary.loc["scale", "in_key"] == 1.0
    assert summary.loc["(seeds themselves)", "in_key"] == 1.0
    fig = metric_figure(df, "in_key")
    assert {tr.name for tr in fig.data} == {"c-major"} and len(fig.data[0].x) == 5  # 4 takes + the seed
    dist = distance_figure(df)
    assert len(dist.data) == 6  # 2 models x 3 distance panels
    assert {a.text for a in dist.layout.annotations} == {LABELS[d] for d in DISTANCES}
    steady_tv = [tr for tr in dist.data if tr.name == "steady" and "pc_tv" in tr.hovertemplate]
    assert list(steady_tv[0].y) == [1.0, 1.0]
    with pytest.raises(ValueError, match="expected a metric"):
        metric_figure(df, "loudness")


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "musiclab", "evaluate", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration  # the evaluate CLI as a subprocess
def test_cli_bad_file_is_one_error_line(tmp_path):
    bad = tmp_path / "notes.mid"
    bad.write_text("these are not MIDI bytes")
    for args in ([str(bad)], [str(ROOT / "musiclab/midi/examples/bach_chorale_bwv66_6.mid"), "--against", str(bad)]):
        r = cli(*args)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: not a MIDI file"), r.stderr
    r = cli("jsb")
    assert r.returncode == 2 and r.stderr.startswith("error: evaluate jsb needs --split")
    r = cli(str(tmp_path / "missing.mid"))
    assert r.returncode == 2 and r.stderr.startswith("error: cannot read")


@pytest.mark.integration  # the evaluate CLI as a subprocess
def test_cli_json_and_table(tmp_path):
    path = tmp_path / "take.mid"
    make_midi(seq(C_MAJOR) + seq([66] * 8, start=4.0)).write(str(path))
    r = cli(str(path), "--seed-end", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["key"] == "C major" and out["continuation"]["repetition"] == 1.0 and out["seed"]["in_key"] == 1.0
    r = cli(str(path), "--corpus", str(ROOT / "musiclab/midi/examples"))
    assert r.returncode == 0, r.stderr
    assert "pc_wasserstein" in r.stdout and f"corpus ({len(list_examples())} files)" in r.stdout
